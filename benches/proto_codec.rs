//! Encode/decode throughput of the agent link's largest messages: a
//! 10,000-device outage batch and a 100,000-device statistics report.
#![forbid(unsafe_code)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use ward_benches::{outage_batch, statistics_batch};

fn codec<M: Message + Default>(c: &mut Criterion, name: &str, message: &M, entries: u64) {
    let bytes = message.encode_to_vec();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(entries));
    group.bench_function("encode", |b| {
        let mut buffer = Vec::with_capacity(bytes.len());
        b.iter(|| {
            buffer.clear();
            message.encode(&mut buffer).expect("buffer grows as needed");
            std::hint::black_box(&buffer);
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| M::decode(std::hint::black_box(bytes.as_slice())).expect("valid message"));
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    codec(c, "transition_batch_10k", &outage_batch(10_000), 10_000);
    codec(
        c,
        "statistics_batch_100k",
        &statistics_batch(100_000),
        100_000,
    );
}

criterion_group!(proto_codec, benches);
criterion_main!(proto_codec);
