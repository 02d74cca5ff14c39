//! The Supabase variables of the old configuration (`SUPABASE_URL`, `SUPABASE_ANON_KEY`,
//! `SUPABASE_SERVICE_KEY`, `SUPABASE_JWT_SECRET`) as this server understands them.
//!
//! The server talks to PostgreSQL directly and verifies tokens itself, so of these it needs
//! the project URL (JWKS location and issuer) and the JWT secret. The legacy API keys are
//! JWTs of the project: their `ref` claim names the project (the URL follows from it when
//! `SUPABASE_URL` is not set) and their signature proves that `SUPABASE_JWT_SECRET` belongs
//! to the same project. Keys of the newer form (`sb_publishable_…`, `sb_secret_…`) carry
//! neither and are accepted as they are.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// The key variables, with the role each must carry.
const KEYS: [(&str, &str); 2] = [
    ("SUPABASE_ANON_KEY", "anon"),
    ("SUPABASE_SERVICE_KEY", "service_role"),
];

/// What the keys tell about the project.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Derived {
    /// `https://<ref>.supabase.co`, when `SUPABASE_URL` was not set and a key names its
    /// project; with the variable it came from.
    pub(crate) url: Option<(String, &'static str)>,
}

/// The project ref of `https://<ref>.supabase.co`.
pub(crate) fn project_ref(url: &str) -> Option<String> {
    let host = url
        .trim()
        .strip_prefix("https://")?
        .split(['/', ':'])
        .next()?;
    host.strip_suffix(".supabase.co")
        .filter(|r| !r.is_empty() && !r.contains('.'))
        .map(str::to_owned)
}

fn claims(jwt: &str) -> Option<(Value, [&str; 3])> {
    let mut parts = jwt.trim().split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    Some((
        serde_json::from_slice(&bytes).ok()?,
        [header, payload, signature],
    ))
}

fn signed_by(parts: [&str; 3], secret: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts[2]) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(parts[0].as_bytes());
    mac.update(b".");
    mac.update(parts[1].as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Checks the Supabase variables against each other and works out what follows from them.
///
/// # Errors
/// A message naming the variable at fault: a key that is neither a legacy key (JWT) nor a new
/// `sb_…` key, a key with the wrong role, keys of two projects, a key of another project than
/// `SUPABASE_URL`, or a `SUPABASE_JWT_SECRET` that did not sign the keys.
pub(crate) fn check(
    env: &HashMap<String, String>,
    url: Option<&str>,
    jwt_secret: Option<&str>,
) -> Result<Derived, String> {
    let mut project: Option<(String, &'static str)> = None;
    for (name, role) in KEYS {
        let Some(key) = env.get(name).map(|k| k.trim()).filter(|k| !k.is_empty()) else {
            continue;
        };
        if key.starts_with("sb_") {
            continue;
        }
        let (claims, parts) = claims(key).ok_or_else(|| {
            format!(
                "{name} is neither a legacy API key (a JWT, eyJ…) nor a new key (sb_…); copy \
                 it from the Supabase dashboard: Project Settings → API Keys"
            )
        })?;
        let found_role = claims["role"].as_str().unwrap_or_default();
        if found_role != role {
            return Err(format!(
                "{name} holds a key with role {found_role:?}, expected {role:?}: the anon and \
                 service_role keys are swapped or mixed up"
            ));
        }
        if let Some(secret) = jwt_secret.filter(|s| !s.is_empty())
            && !signed_by(parts, secret)
        {
            return Err(format!(
                "SUPABASE_JWT_SECRET did not sign {name}: they come from different projects, \
                 or the secret was rotated (Project Settings → JWT Keys)"
            ));
        }
        if let Some(reference) = claims["ref"].as_str() {
            match &project {
                Some((other, first)) if other != reference => {
                    return Err(format!(
                        "{first} belongs to project {other}, {name} to project {reference}"
                    ));
                }
                Some(_) => {}
                None => project = Some((reference.to_owned(), name)),
            }
        }
    }
    let mut derived = Derived::default();
    match (url.and_then(project_ref), &project) {
        (Some(from_url), Some((from_key, name))) if &from_url != from_key => {
            return Err(format!(
                "SUPABASE_URL names project {from_url}, but {name} belongs to project {from_key}"
            ));
        }
        _ if url.is_some() => {}
        (_, Some((reference, name))) => {
            derived.url = Some((format!("https://{reference}.supabase.co"), name));
        }
        _ => {}
    }
    Ok(derived)
}

/// What to tell an operator whose configuration names a Supabase project but no database.
pub(crate) fn database_hint(supabase_url: Option<&str>) -> String {
    let dashboard = supabase_url.and_then(project_ref).map_or_else(
        || "https://supabase.com/dashboard/project/_".to_owned(),
        |r| format!("https://supabase.com/dashboard/project/{r}"),
    );
    format!(
        "the server talks to the project's PostgreSQL directly, so it needs DATABASE_URL as \
         well as the SUPABASE_* variables. Copy the connection string from the Supabase \
         dashboard ({dashboard}): Connect (top of the page) → \"Session pooler\" (IPv4, port \
         5432) or \"Direct connection\", replace [YOUR-PASSWORD] with the database password \
         (Project Settings → Database → Reset database password if it is lost) and add \
         ?sslmode=require. Never the transaction pooler on port 6543"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value, secret: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{sig}")
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_keys_name_the_project_and_prove_the_secret() {
        let secret = "super-secret-jwt-token-with-at-least-32-characters";
        let anon = jwt(
            &serde_json::json!({"iss": "supabase", "ref": "abcd", "role": "anon"}),
            secret,
        );
        let service = jwt(
            &serde_json::json!({"iss": "supabase", "ref": "abcd", "role": "service_role"}),
            secret,
        );
        let vars = env(&[
            ("SUPABASE_ANON_KEY", &anon),
            ("SUPABASE_SERVICE_KEY", &service),
        ]);
        let derived = check(&vars, None, Some(secret)).unwrap();
        assert_eq!(
            derived.url,
            Some(("https://abcd.supabase.co".to_owned(), "SUPABASE_ANON_KEY"))
        );
        assert_eq!(
            check(&vars, Some("https://abcd.supabase.co"), None).unwrap(),
            Derived::default()
        );

        let e = check(&vars, None, Some("another-secret")).unwrap_err();
        assert!(
            e.contains("SUPABASE_JWT_SECRET did not sign SUPABASE_ANON_KEY"),
            "{e}"
        );
        let e = check(&vars, Some("https://wxyz.supabase.co"), None).unwrap_err();
        assert!(
            e.contains("project wxyz") && e.contains("project abcd"),
            "{e}"
        );
        let swapped = env(&[("SUPABASE_SERVICE_KEY", &anon)]);
        let e = check(&swapped, None, None).unwrap_err();
        assert!(e.contains("role \"anon\""), "{e}");
        let garbage = env(&[("SUPABASE_ANON_KEY", "not-a-key")]);
        assert!(
            check(&garbage, None, None)
                .unwrap_err()
                .contains("SUPABASE_ANON_KEY")
        );
        let new_style = env(&[("SUPABASE_ANON_KEY", "sb_publishable_abc")]);
        assert_eq!(check(&new_style, None, None).unwrap(), Derived::default());
    }

    #[test]
    fn the_database_hint_points_at_the_project() {
        let hint = database_hint(Some("https://abcd.supabase.co"));
        assert!(
            hint.contains("https://supabase.com/dashboard/project/abcd"),
            "{hint}"
        );
        assert!(
            hint.contains("DATABASE_URL") && hint.contains("Session pooler"),
            "{hint}"
        );
        assert_eq!(
            project_ref("https://abcd.supabase.co/"),
            Some("abcd".to_owned())
        );
        assert_eq!(project_ref("http://localhost:54321"), None);
    }
}
