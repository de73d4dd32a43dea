//! Secrets read from files: `nats.password_file`, `nats.token_file`, `http.bearer_token_file` and
//! `erp.webhook.auth_header_file` name a file whose content is the secret, so that no secret has
//! to be written into the TOML or the environment (a mounted Kubernetes Secret, a systemd
//! credential). Trailing line breaks are removed. A secret and its file both set is an error.
//! A secret's content never appears in a message.

use std::path::Path;

use super::{Config, ConfigError};

/// Reads every `*_file` secret into its key.
pub(super) fn resolve(config: &mut Config) -> Result<(), ConfigError> {
    let nats = &mut config.nats;
    resolve_one("nats.password", &mut nats.password, nats.password_file.as_deref())?;
    resolve_one("nats.token", &mut nats.token, nats.token_file.as_deref())?;
    let http = &mut config.http;
    resolve_one("http.bearer_token", &mut http.bearer_token, http.bearer_token_file.as_deref())?;
    if let Some(webhook) = config.erp.webhook.as_mut() {
        resolve_one("erp.webhook.auth_header", &mut webhook.auth_header, webhook.auth_header_file.as_deref())?;
    }
    Ok(())
}

fn resolve_one(key: &str, secret: &mut Option<String>, file: Option<&Path>) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    let file_key = format!("{key}_file");
    if secret.is_some() {
        let message = format!("{key} and {file_key} are both set (in the file or the environment); set one of them");
        return Err(ConfigError::Invalid { key: file_key, message });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key: file_key.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(ConfigError::Invalid { key: file_key, message: format!("{} is empty", path.display()) });
    }
    *secret = Some(value.to_string());
    Ok(())
}
