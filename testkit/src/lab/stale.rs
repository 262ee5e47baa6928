//! Labs whose test process died without dropping them (killed, aborted):
//! their namespaces, host links and `/etc/netns` entries would otherwise
//! stay, and a host link's address (chosen by the lab's number in its
//! process) would shadow the same address of a later lab, cutting its
//! agent off from the controller. Removed, and said, before the first lab
//! of a process starts.

use std::path::Path;
use std::process::Command;

use crate::RESOURCE_PREFIX;

/// Removes every lab whose creating process no longer runs ([`super::Lab::start`]
/// calls it once per process).
pub fn remove_stale_labs() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let running = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    // Host links are named by PID modulo 100,000: a dead process's links
    // are only removed when no running lab's process shares that name.
    let live_link_names: Vec<u32> = names
        .iter()
        .filter_map(|name| owner(name))
        .filter(|&pid| running(pid))
        .map(|pid| pid % 100_000)
        .collect();
    for name in &names {
        let Some(pid) = owner(name) else { continue };
        if running(pid) {
            continue;
        }
        eprintln!("lab: removing {name}, left behind by process {pid}, which no longer runs");
        if let Err(error) = super::ip(&["netns", "del", name]) {
            eprintln!("lab: deleting stale namespace {name}: {error}");
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
        if !live_link_names.contains(&(pid % 100_000)) {
            remove_host_links_of(pid);
        }
    }
}

/// The process that made lab namespace `name` (`ward-test-PID-N-role`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(RESOURCE_PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

/// Deletes the host ends (`whPID-N`) of process `pid`'s host links.
fn remove_host_links_of(pid: u32) {
    let prefix = format!("wh{}-", pid % 100_000);
    let Ok(output) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // `7: whNNN-0@if2: <BROADCAST,...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(&prefix)
            && let Err(error) = super::ip(&["link", "del", name])
        {
            eprintln!("lab: deleting stale host link {name}: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn a_lab_namespace_names_its_process() {
        assert_eq!(owner("ward-test-10880-0-client"), Some(10880));
        assert_eq!(owner("ward-test-7-12-site"), Some(7));
        assert_eq!(owner("other-10880-0-client"), None);
        assert_eq!(owner("ward-test-x-0-client"), None);
    }
}
