//! `ward-agent`: see [`ward_agent::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ward_agent::cli::main()
}
