//! `e2e-no-ipv6 PROGRAM [ARGS…]`: runs PROGRAM unable to open any IPv6
//! socket (`socket(AF_INET6, …)` fails with `EAFNOSUPPORT`), as systemd's
//! `RestrictAddressFamilies=~AF_INET6` or an IPv4-only sandbox leaves a
//! service. A seccomp filter, inherited across `exec`; everything else is
//! allowed.
#![forbid(unsafe_code)]

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

fn main() -> ExitCode {
    match run() {
        Ok(never) => match never {},
        Err(error) => {
            eprintln!("e2e-no-ipv6: {error:#}");
            ExitCode::from(125)
        }
    }
}

fn run() -> anyhow::Result<std::convert::Infallible> {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().context("usage: e2e-no-ipv6 PROGRAM [ARGS…]")?;
    let ipv6 = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::try_from(libc::AF_INET6)?,
    )?;
    let filter = SeccompFilter::new(
        [(libc::SYS_socket, vec![SeccompRule::new(vec![ipv6])?])].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EAFNOSUPPORT)?),
        std::env::consts::ARCH.try_into()?,
    )?;
    let program_filter: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter(&program_filter).context("installing the seccomp filter")?;
    let error = Command::new(&program).args(args).exec();
    Err(error).with_context(|| format!("running {}", program.to_string_lossy()))
}
