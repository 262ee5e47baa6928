//! `ward-agent`: see [`ward_agent::cli`].

fn main() -> std::process::ExitCode {
    ward_agent::cli::main()
}
