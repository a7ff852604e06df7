//! Host capabilities: what a component's imports ask of the host, named the way
//! claims and delegations name them.

use wasmparser::{Parser, Payload};

use crate::TrustError;

/// What a host grants unless told otherwise: what Rust's std needs in a model.
pub const DEFAULT_GRANTED: &[&str] = &["random", "clocks", "stdio"];

/// The capability an import needs; `None` for the model contract itself and for
/// plumbing every other interface relies on.
pub fn capability_of(import: &str) -> Option<String> {
    let (package, interface) = import.split_once('/').unwrap_or((import, ""));
    let package = package.split('@').next().unwrap_or(package);
    let interface = interface.split('@').next().unwrap_or(interface);
    match (package, interface) {
        ("wasmops:model", _) | ("wasi:io", _) => None,
        ("wasi:random", _) => Some("random".into()),
        ("wasi:clocks", _) => Some("clocks".into()),
        (
            "wasi:cli",
            "stdin" | "stdout" | "stderr" | "terminal-input" | "terminal-output" | "terminal-stdin"
            | "terminal-stdout" | "terminal-stderr",
        ) => Some("stdio".into()),
        ("wasi:cli", "environment") => Some("environment".into()),
        ("wasi:cli", "exit") => Some("exit".into()),
        (p, _) => Some(p.rsplit(':').next().unwrap_or(p).to_string()),
    }
}

/// The names of a component's top-level imports, read without compiling it.
pub fn imports(wasm: &[u8]) -> Result<Vec<String>, TrustError> {
    let err = |e: wasmparser::BinaryReaderError| {
        TrustError::Io(format!("cannot read the component's imports: {e}"))
    };
    let mut out = vec![];
    // Nested modules and components import from their parent, not from the host:
    // only depth 0 counts.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(err)? {
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    out.push(import.map_err(err)?.name.name.to_string());
                }
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(out)
}

/// Refuses claims asking for more than `granted` (or than the delegation allows),
/// and imports that need a capability the claims do not declare.
pub fn check(
    claimed: &[String],
    granted: &[String],
    delegated: Option<&[String]>,
    wasm: &[u8],
) -> Result<(), TrustError> {
    for c in claimed {
        if !granted.contains(c) {
            return Err(TrustError::CapabilityDenied {
                capability: c.clone(),
                granted: granted.to_vec(),
            });
        }
        if let Some(allowed) = delegated
            && !allowed.contains(c)
        {
            return Err(TrustError::CapabilityDenied {
                capability: c.clone(),
                granted: allowed.to_vec(),
            });
        }
    }
    for import in imports(wasm)? {
        if let Some(cap) = capability_of(&import)
            && !claimed.contains(&cap)
        {
            return Err(TrustError::UndeclaredImport {
                import,
                capability: cap,
            });
        }
    }
    Ok(())
}

/// The capabilities a component's imports need, sorted: what `build` claims.
pub fn required(wasm: &[u8]) -> Result<Vec<String>, TrustError> {
    let mut caps: Vec<String> = imports(wasm)?
        .iter()
        .filter_map(|i| capability_of(i))
        .collect();
    caps.sort();
    caps.dedup();
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_capabilities() {
        assert_eq!(capability_of("wasmops:model/types@0.1.0"), None);
        assert_eq!(capability_of("wasi:io/streams@0.2.6"), None);
        assert_eq!(
            capability_of("wasi:random/insecure-seed@0.2.6").as_deref(),
            Some("random")
        );
        assert_eq!(
            capability_of("wasi:cli/terminal-stdout@0.2.6").as_deref(),
            Some("stdio")
        );
        assert_eq!(
            capability_of("wasi:cli/environment@0.2.6").as_deref(),
            Some("environment")
        );
        assert_eq!(
            capability_of("wasi:filesystem/preopens@0.2.6").as_deref(),
            Some("filesystem")
        );
        assert_eq!(
            capability_of("wasi:sockets/tcp@0.2.6").as_deref(),
            Some("sockets")
        );
    }
}
