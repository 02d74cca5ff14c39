//! Hiding passwords in connection strings before they are shown (`Debug`, error messages,
//! `check`, `config`): one function, [`redact`], for every place that prints one.

/// `value` with every password it carries hidden: in a URL (the password of its user part and
/// the secret parameters of its query, `?user=app&password=…` included) or in a libpq
/// keyword/value string (`host=db password=…`). Text that mentions a password but parses as
/// neither is hidden whole rather than half.
pub fn redact(value: &str) -> String {
    if value.contains("://") {
        return redact_query(&redact_user_password(value));
    }
    if value.contains('=') {
        if let Some(redacted) = redact_keyword_values(value) {
            return redacted;
        }
        if value.to_ascii_lowercase().contains("password") {
            return "***".to_owned();
        }
    }
    value.to_owned()
}

/// Whether a parameter of a URL query or a libpq connection string holds a secret:
/// `password`, `sslpassword`, or a name with a segment `secret`, `password`, `token`, `key`
/// or `keys` (`api_key`; but not a `…_key_id`, which only names the key, nor `sslkey`, a
/// file).
fn is_secret_parameter(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    let segments: Vec<&str> = lower.split(['_', '.', '-']).collect();
    lower.ends_with("password")
        || (segments.last() != Some(&"id")
            && segments
                .iter()
                .any(|s| matches!(*s, "secret" | "password" | "token" | "key" | "keys")))
}

/// A URL with the password of its user part replaced. The user part ends at the last `@` of
/// the authority; a password with an unescaped `/`, `?` or `#` hides everything up to the
/// URL's last `@` (more hidden rather than part of a password shown).
fn redact_user_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@').or_else(|| {
        let at = rest.rfind('@')?;
        let colon = rest[..at].find(':')?;
        // The `:` must be in what a user name may hold (no `/`) to start a password.
        (colon < rest[..at].find('/').unwrap_or(at)).then_some(at)
    });
    match at {
        Some(at) if rest[..at].contains(':') => {
            let user = &rest[..at];
            let name = user.split_once(':').map_or(user, |(n, _)| n);
            format!("{scheme}://{name}:***@{}", &rest[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A URL with the secret parameters of its query replaced.
fn redact_query(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = rest
        .split_once('#')
        .map_or((rest, None), |(q, f)| (q, Some(f)));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{base}?{}{fragment}", pairs.join("&"))
}

/// A libpq keyword/value connection string (`host=db user=u password='p w'`) with the values
/// of its secret keywords replaced; `None` when `value` is not one.
fn redact_keyword_values(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut pairs = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        let start = skip_spaces(i);
        out.push_str(&value[i..start]);
        i = start;
        if i >= bytes.len() {
            break;
        }
        let name_end = value[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(bytes.len(), |n| i + n);
        if name_end == i {
            return None;
        }
        let name = &value[i..name_end];
        let equals = skip_spaces(name_end);
        if bytes.get(equals) != Some(&b'=') {
            return None;
        }
        let value_start = skip_spaces(equals + 1);
        // A quoted value ends at the first quote not escaped by a backslash; a bare one at
        // white space.
        let value_end = if bytes.get(value_start) == Some(&b'\'') {
            let mut j = value_start + 1;
            loop {
                match bytes.get(j) {
                    None => return None,
                    Some(b'\\') => j += 2,
                    Some(b'\'') => break j + 1,
                    Some(_) => j += 1,
                }
            }
        } else {
            value[value_start..]
                .find(|c: char| c.is_ascii_whitespace())
                .map_or(bytes.len(), |n| value_start + n)
        };
        out.push_str(&value[i..value_start]);
        if is_secret_parameter(name) {
            out.push_str("***");
        } else {
            out.push_str(&value[value_start..value_end.min(bytes.len())]);
        }
        i = value_end.min(bytes.len());
        pairs += 1;
    }
    (pairs > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            redact("postgres://u:pw@db:5432/x?sslmode=require"),
            "postgres://u:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact("https://cdn.example.com/a"),
            "https://cdn.example.com/a"
        );
        assert_eq!(redact("postgres://u@db"), "postgres://u@db");
        assert_eq!(redact("postgres://u:pw@db"), "postgres://u:***@db");
        // A password with characters a URL should have escaped is hidden all the same.
        assert_eq!(redact("postgres://u:p/w?x@db/x"), "postgres://u:***@db/x");
    }

    #[test]
    fn passwords_in_queries_and_keyword_strings_are_hidden() {
        assert_eq!(
            redact("postgres://db:5432/app?user=app&password=hunter2"),
            "postgres://db:5432/app?user=app&password=***"
        );
        assert_eq!(
            redact(
                "postgres://db:5432/x?user=u&password=qsecret&sslmode=require&sslpassword=ksecret#f"
            ),
            "postgres://db:5432/x?user=u&password=***&sslmode=require&sslpassword=***#f"
        );
        assert_eq!(
            redact("postgresql://u:pw@db/x?PASSWORD=upper&api_key=k1&sslkey=/etc/k.pem"),
            "postgresql://u:***@db/x?PASSWORD=***&api_key=***&sslkey=/etc/k.pem"
        );
        assert_eq!(
            redact(
                "host=db port=5432 user=u password=plain dbname=x sslpassword = 'two words' sslmode=require"
            ),
            "host=db port=5432 user=u password=*** dbname=x sslpassword = *** sslmode=require"
        );
        assert_eq!(
            redact(r"host=db password='it\'s \\ secret' user=u"),
            "host=db password=*** user=u"
        );
        // Half a keyword string that mentions a password is hidden whole.
        assert_eq!(redact("host=db password='unterminated"), "***");
        assert_eq!(redact("a=b c=d"), "a=b c=d");
        assert_eq!(redact("plain text"), "plain text");
    }
}
