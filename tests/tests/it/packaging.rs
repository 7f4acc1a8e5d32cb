//! The Debian packaging: the systemd unit keeps its sandbox, and the
//! environment file it reads names only variables that sesame-server knows.
//! (`scripts/test` also runs `systemd-analyze verify` on the unit.)

use std::collections::BTreeSet;

use sesame_tests::{server_command, stdout, workspace_root, Result};

fn packaging(file: &str) -> Result<String> {
    Ok(std::fs::read_to_string(workspace_root().join("packaging").join(file))?)
}

/// The `SESAME_…` names a file sets, commented out or not.
fn variables(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.trim_start_matches(['#', ' ']).trim_start_matches("Environment="))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| name.starts_with("SESAME_") && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_unit_runs_as_a_dynamic_user_in_a_strict_sandbox() -> Result<()> {
    let unit = packaging("sesame-server.service")?;
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for required in [
        "ExecStart=/usr/bin/sesame-server",
        "DynamicUser=yes",
        "StateDirectory=sesame-server",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "PrivateDevices=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "MemoryDenyWriteExecute=yes",
        "EnvironmentFile=-/etc/default/sesame-server",
    ] {
        assert!(lines.contains(required), "the unit lacks {required:?}");
    }
    Ok(())
}

#[test]
fn the_environment_file_and_the_unit_name_only_options_that_exist() -> Result<()> {
    let help = stdout(&server_command(&["--help".as_ref()])?);
    let mut named = variables(&packaging("sesame-server.env")?);
    named.extend(variables(&packaging("sesame-server.service")?));
    assert!(named.len() >= 10, "{named:?}");
    for name in &named {
        assert!(help.contains(&format!("[env: {name}")), "{name} is not an option of sesame-server:\n{help}");
    }
    Ok(())
}
