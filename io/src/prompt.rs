//! The text forms of prompts that the command line and config files take: a box
//! `z0,y0,x0,z1,y1,x1` (voxel indices, max inclusive), clicks `z,y,x,fg;z,y,x,bg`, and a triple
//! `z,y,x` of numbers (spacing). Every malformed string is an error that quotes it; none
//! panics (fuzzed: `fuzz/fuzz_targets/prompt.rs`).

/// What is wrong with a prompt string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PromptError(pub String);

/// A parsed click: `[z, y, x]` and whether it is foreground.
pub type TextClick = ([usize; 3], bool);

/// Parses a box `z0,y0,x0,z1,y1,x1`; with `dims`, checks it lies inside the volume with
/// `lo ≤ hi` on every axis (a box one voxel thick on an axis is allowed: a 2-D box).
///
/// # Errors
/// Not six non-negative integers; inverted; outside `dims`.
pub fn parse_box(
    s: &str,
    dims: Option<[usize; 3]>,
) -> Result<([usize; 3], [usize; 3]), PromptError> {
    let what = || format!("--box `{s}`: expected six voxel indices z0,y0,x0,z1,y1,x1");
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| PromptError(format!("{}: {e}", what())))?;
    if v.len() != 6 {
        return Err(PromptError(what()));
    }
    let (lo, hi) = ([v[0], v[1], v[2]], [v[3], v[4], v[5]]);
    if let Some(ax) = (0..3).find(|&a| lo[a] > hi[a]) {
        return Err(PromptError(format!(
            "--box `{s}`: inverted on axis {} ({} > {}); give the low corner first",
            ["z", "y", "x"][ax],
            lo[ax],
            hi[ax]
        )));
    }
    if let Some(d) = dims
        && let Some(ax) = (0..3).find(|&a| hi[a] >= d[a])
    {
        return Err(PromptError(format!(
            "--box `{s}`: {} = {} is outside the volume {d:?} (indices run 0..{})",
            ["z1", "y1", "x1"][ax],
            hi[ax],
            d[ax]
        )));
    }
    Ok((lo, hi))
}

/// Parses clicks `z,y,x,fg;z,y,x,bg` (label also `1`/`+` or `0`/`-`), in time order; empty
/// parts are skipped.
///
/// # Errors
/// A part that is not three non-negative integers and a label.
pub fn parse_clicks(s: &str) -> Result<Vec<TextClick>, PromptError> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(i, part)| {
            let f: Vec<&str> = part.split(',').map(str::trim).collect();
            if f.len() != 4 {
                return Err(PromptError(format!(
                    "click {i} `{part}`: expected z,y,x,fg or z,y,x,bg"
                )));
            }
            let mut zyx = [0usize; 3];
            for ax in 0..3 {
                zyx[ax] = f[ax].parse().map_err(|e| {
                    PromptError(format!(
                        "click {i} `{part}`: `{}` is not a voxel index: {e}",
                        f[ax]
                    ))
                })?;
            }
            let fg = match f[3].to_ascii_lowercase().as_str() {
                "fg" | "1" | "+" => true,
                "bg" | "0" | "-" => false,
                o => {
                    return Err(PromptError(format!(
                        "click {i} `{part}`: label `{o}` is neither fg nor bg"
                    )));
                }
            };
            Ok((zyx, fg))
        })
        .collect()
}

/// Parses three finite numbers `z,y,x` (`what` names the option in the error).
///
/// # Errors
/// Not three numbers, or one of them NaN / infinite.
pub fn parse_zyx(s: &str, what: &str) -> Result<[f64; 3], PromptError> {
    let bad = || PromptError(format!("{what} `{s}` is not three numbers z,y,x"));
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if v.len() != 3 || v.iter().any(|x| !x.is_finite()) {
        return Err(bad());
    }
    Ok([v[0], v[1], v[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes() {
        assert_eq!(
            parse_box("1, 2,3,4,5,6", Some([5, 6, 7])),
            Ok(([1, 2, 3], [4, 5, 6]))
        );
        assert_eq!(parse_box("3,0,0,3,9,9", None), Ok(([3, 0, 0], [3, 9, 9])));
        for (s, needle) in [
            ("5,1,1,1,2,2", "inverted on axis z"),
            ("1,2,3", "six voxel indices"),
            ("-1,0,0,1,1,1", "six voxel indices"),
            ("0,0,0,5,1,1", "z1 = 5 is outside"),
        ] {
            let e = parse_box(s, Some([5, 6, 7])).unwrap_err();
            assert!(e.0.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn clicks_and_triples() {
        assert_eq!(
            parse_clicks("1,2,3,fg; 4,5,6,-;"),
            Ok(vec![([1, 2, 3], true), ([4, 5, 6], false)])
        );
        assert!(parse_clicks("1,2,3,xx").is_err());
        assert!(parse_clicks("1,2,fg").is_err());
        assert_eq!(parse_zyx("1,2.5,3", "--spacing"), Ok([1.0, 2.5, 3.0]));
        assert!(parse_zyx("1,NaN,3", "--spacing").is_err());
        assert!(parse_zyx("1,2", "--spacing").is_err());
    }
}
