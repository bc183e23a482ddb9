//! `${VAR}` and `${VAR:-default}` in string values, expanded before the typed model is read.
//! `$${` stands for a literal `${`. Defaults may themselves contain `${...}`.

use super::Problem;

/// Expands every string in `value` in place; problems carry the key path of the string.
pub fn expand_tree(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(reason) => problems.push(Problem::new(path, reason)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand_tree(item, &child, env, problems);
            }
        }
        _ => {}
    }
}

pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(after_escape) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = after_escape;
        } else if let Some(body_and_rest) = after.strip_prefix("${") {
            let end = closing_brace(body_and_rest)
                .ok_or_else(|| format!("unclosed `${{` in {input:?}"))?;
            let body = &body_and_rest[..end];
            out.push_str(&resolve(body, env)?);
            rest = &body_and_rest[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn resolve(body: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    let valid_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_name {
        return Err(format!(
            "`${{{body}}}` is not a valid environment reference"
        ));
    }
    match (env(name).filter(|v| !v.is_empty()), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => expand(default, env),
        (None, None) => Err(format!(
            "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            "DIR" => Some("/srv".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_default_and_nested() {
        assert_eq!(expand("127.0.0.1:${PORT}", &env).unwrap(), "127.0.0.1:9000");
        assert_eq!(expand("${NOPE:-8080}", &env).unwrap(), "8080");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(
            expand("${NOPE:-${DIR}/data}/db", &env).unwrap(),
            "/srv/data/db"
        );
        assert_eq!(
            expand("cost $5 and $${HOME}", &env).unwrap(),
            "cost $5 and ${HOME}"
        );
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert!(
            expand("${NOPE}", &env)
                .unwrap_err()
                .contains("NOPE is not set")
        );
        assert!(expand("${PORT", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${1X}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn tree_problems_carry_key_paths() {
        let mut v: toml::Value = toml::from_str(
            "[server]\nlisten = \"${MISSING}\"\n[[routes]]\npath = \"${ALSO_MISSING}\"",
        )
        .unwrap();
        let mut problems = Vec::new();
        expand_tree(&mut v, "", &env, &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["routes[0].path", "server.listen"]);
    }
}
