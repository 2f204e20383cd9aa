//! Reading and merging the official evaluator's `metrics.csv` (as [`crate::protocol::csv_header`]
//! writes it, and as `CVPR25_iter_eval.py` does): shards of one run become one table; several
//! runs become columns of a comparison.

use std::collections::BTreeMap;

/// A `metrics.csv`: its header and rows, cells as text (numbers are parsed on demand, so a
/// merged table is byte-for-byte the rows it came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTable {
    /// Column names.
    pub header: Vec<String>,
    /// One row per case, `CaseName` first.
    pub rows: Vec<Vec<String>>,
}

/// What is wrong with a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(pub String);

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TableError {}

impl MetricsTable {
    /// Parses a CSV with a `CaseName` first column (plain commas, no quoting: neither the
    /// official evaluator's case names nor its numbers contain a comma).
    ///
    /// # Errors
    /// No header, no `CaseName` column, or a row of another width (with its line number).
    pub fn parse(text: &str) -> Result<MetricsTable, TableError> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| TableError("empty file".into()))?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        if header.first().map(String::as_str) != Some("CaseName") {
            return Err(TableError(format!(
                "first column is `{}`, expected `CaseName`",
                header.first().map_or("", String::as_str)
            )));
        }
        let mut rows = Vec::new();
        for (i, l) in lines.enumerate() {
            let r: Vec<String> = l.split(',').map(|s| s.trim().to_string()).collect();
            if r.len() != header.len() {
                return Err(TableError(format!(
                    "line {}: {} cells, the header has {}",
                    i + 2,
                    r.len(),
                    header.len()
                )));
            }
            rows.push(r);
        }
        Ok(MetricsTable { header, rows })
    }

    /// The CSV text (header, then rows, newline-terminated).
    pub fn to_csv(&self) -> String {
        let mut s = self.header.join(",");
        s.push('\n');
        for r in &self.rows {
            s.push_str(&r.join(","));
            s.push('\n');
        }
        s
    }

    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// A column as numbers (`NaN` where a cell is not a number).
    pub fn values(&self, name: &str) -> Option<Vec<f64>> {
        let c = self.column(name)?;
        Some(
            self.rows
                .iter()
                .map(|r| r[c].parse::<f64>().unwrap_or(f64::NAN))
                .collect(),
        )
    }

    /// Number of steps (`DSC_1`, `DSC_2`, … present).
    pub fn steps(&self) -> usize {
        (1..)
            .take_while(|i| self.column(&format!("DSC_{i}")).is_some())
            .count()
    }

    /// Case names.
    pub fn cases(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r[0].as_str()).collect()
    }

    /// Mean and (population) standard deviation of a column over the rows whose case name
    /// passes `keep`; `None` for a missing column or no row.
    pub fn mean_sd(&self, name: &str, keep: &dyn Fn(&str) -> bool) -> Option<(f64, f64)> {
        let c = self.column(name)?;
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| keep(&r[0]))
            .map(|r| r[c].parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        Some((m, var.sqrt()))
    }
}

/// Merges shards of one run: the same header, no case twice; rows sorted by case name (the
/// order of an unsharded run).
///
/// # Errors
/// Headers that differ, or a case in two shards.
pub fn merge(tables: &[MetricsTable]) -> Result<MetricsTable, TableError> {
    let Some(first) = tables.first() else {
        return Err(TableError("nothing to merge".into()));
    };
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, t) in tables.iter().enumerate() {
        if t.header != first.header {
            return Err(TableError(format!(
                "table {} has other columns than table 1",
                k + 1
            )));
        }
        for r in &t.rows {
            if rows.insert(r[0].clone(), r.clone()).is_some() {
                return Err(TableError(format!("case {} is in two tables", r[0])));
            }
        }
    }
    Ok(MetricsTable {
        header: first.header.clone(),
        rows: rows.into_values().collect(),
    })
}

/// The modality of a case name: the text before its first `_` or `.` (`CT_Abd_001.npz` → `CT`).
pub fn modality(case: &str) -> &str {
    case.split(['_', '.']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "CaseName,DSC_1,DSC_2\nct_b.npz,0.5,0.75\nct_a.npz,0.25,1\n";
    const B: &str = "CaseName,DSC_1,DSC_2\nmr_c.npz,1,1\n";

    #[test]
    fn parses_merges_and_averages() {
        let a = MetricsTable::parse(A).expect("a");
        let b = MetricsTable::parse(B).expect("b");
        assert_eq!(a.steps(), 2);
        let m = merge(&[b.clone(), a.clone()]).expect("merge");
        assert_eq!(m.cases(), ["ct_a.npz", "ct_b.npz", "mr_c.npz"]);
        assert_eq!(
            m.to_csv(),
            "CaseName,DSC_1,DSC_2\nct_a.npz,0.25,1\nct_b.npz,0.5,0.75\nmr_c.npz,1,1\n"
        );
        // (0.25 + 0.5 + 1) / 3, by hand.
        let (mean, _) = m.mean_sd("DSC_1", &|_| true).expect("mean");
        assert!((mean - 1.75 / 3.0).abs() < 1e-15);
        let (ct, sd) = m.mean_sd("DSC_1", &|c| modality(c) == "ct").expect("ct");
        assert_eq!((ct, sd), (0.375, 0.125));
        assert!(m.mean_sd("DSC_9", &|_| true).is_none());
    }

    #[test]
    fn refuses_overlaps_other_columns_and_ragged_rows() {
        let a = MetricsTable::parse(A).expect("a");
        assert!(merge(&[a.clone(), a.clone()]).is_err());
        let other = MetricsTable::parse("CaseName,DSC_1\nx.npz,1\n").expect("other");
        assert!(merge(&[a, other]).is_err());
        assert!(MetricsTable::parse("CaseName,DSC_1\nx.npz\n").is_err());
        assert!(MetricsTable::parse("Case,DSC_1\n").is_err());
        assert!(MetricsTable::parse("").is_err());
    }
}
