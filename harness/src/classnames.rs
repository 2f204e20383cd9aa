//! Each case's class names from a dataset manifest (`segvol eval --text-from-class-names` turns
//! them into text prompts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::HarnessError;

type Result<T> = std::result::Result<T, HarnessError>;

/// Case (file stem) → class names, label `i + 1` ↔ index `i`.
pub type ClassNames = HashMap<String, Vec<String>>;

/// The manifest to read: `explicit`, else `manifest.json` in `data` or its parent folder (the
/// layout of `shared/data` and `shared/data/train`).
pub fn manifest_path(explicit: Option<&Path>, data: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let dir = if data.is_dir() {
        data
    } else {
        data.parent().unwrap_or(Path::new("."))
    };
    [dir.join("manifest.json"), dir.join("../manifest.json")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            HarnessError::file(
                dir,
                "no manifest.json here or in the parent folder: give --class-names FILE",
            )
        })
}

/// A structure's name as a prompt: what follows a `" ("` dropped (the dev manifest's
/// "kidney_right (TotalSegmentator 'total' class 2)"), underscores as spaces.
fn prompt_name(raw: &str) -> String {
    raw.split(" (")
        .next()
        .unwrap_or(raw)
        .replace('_', " ")
        .trim()
        .to_string()
}

/// Reads class names from a JSON file: `{"cases": [{"case": …, "names": [...]}]}` (the training
/// set's manifest), `{"cases": [{"case": …, "labels": {"1": {"name": …}}}]}` (the development
/// set's), or a plain `{"case": ["name", …]}`.
///
/// # Errors
/// An unreadable file, or one in none of these shapes.
pub fn read_class_names(path: &Path) -> Result<ClassNames> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::file(path, format!("cannot read: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| HarnessError::file(path, format!("not JSON: {e}")))?;
    let bad = || {
        HarnessError::file(
            path,
            "no class names (expected `cases` with `case` and `names` or `labels`, or case → [names])",
        )
    };
    let mut out = ClassNames::new();
    if let Some(cases) = v.get("cases").and_then(Value::as_array) {
        for c in cases {
            let Some(case) = c.get("case").and_then(Value::as_str) else {
                continue;
            };
            let names: Option<Vec<String>> = if let Some(n) = c.get("names") {
                let list = match n {
                    Value::Array(a) => a.clone(),
                    // The training manifest writes the list as Python's repr.
                    Value::String(s) => serde_json::from_str::<Vec<Value>>(&s.replace('\'', "\""))
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                Some(
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(prompt_name)
                        .collect(),
                )
            } else if let Some(l) = c.get("labels").and_then(Value::as_object) {
                let mut pairs: Vec<(u32, String)> = l
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.parse().ok()?, prompt_name(v.get("name")?.as_str()?)))
                    })
                    .collect();
                pairs.sort();
                Some(pairs.into_iter().map(|p| p.1).collect())
            } else {
                None
            };
            if let Some(n) = names.filter(|n| !n.is_empty()) {
                out.insert(case.to_string(), n);
            }
        }
    } else if let Some(o) = v.as_object() {
        for (case, n) in o {
            if let Some(a) = n.as_array() {
                let names: Vec<String> = a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(prompt_name)
                    .collect();
                out.insert(case.clone(), names);
            }
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// The class names of `case` (its file name; the stem is looked up), label `i + 1` ↔ index `i`.
///
/// # Errors
/// [`HarnessError::Invalid`] when the case is not in the manifest.
pub fn names_of<'a>(names: &'a ClassNames, case: &str) -> Result<&'a [String]> {
    let stem = case.strip_suffix(".npz").unwrap_or(case);
    names.get(stem).map(Vec::as_slice).ok_or_else(|| {
        HarnessError::Invalid(format!(
            "{case}: no class names for this case in the manifest"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_manifest_shapes_and_a_plain_map() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("m.json");
        std::fs::write(
            &p,
            r#"{"cases": [
                {"case": "a", "names": "['small_bowel', 'kidney_right']"},
                {"case": "b", "labels": {"2": {"name": "prostate (TotalSegmentator 'total' class 22)"},
                                         "1": {"name": "urinary_bladder (x)"}}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = read_class_names(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m["a"], ["small bowel", "kidney right"]);
        assert_eq!(m["b"], ["urinary bladder", "prostate"]);
        std::fs::write(&p, r#"{"c": ["liver"]}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_class_names(&p).unwrap_or_else(|e| panic!("{e}"))["c"],
            ["liver"]
        );
        std::fs::write(&p, r#"{"cases": []}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_class_names(&p).is_err());
        assert!(names_of(&m, "a.npz").is_ok_and(|n| n == ["small bowel", "kidney right"]));
        assert!(names_of(&m, "z.npz").is_err());
    }
}
