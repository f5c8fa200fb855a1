//! Counting predictions against labels.

use std::io::Write;

use serde_json::{json, Map, Value};

/// Accuracy, recall per class and the confusion table of predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct Tally {
    pub classes: Vec<String>,
    /// confusion[label][prediction]
    pub confusion: Vec<Vec<usize>>,
}

impl Tally {
    pub fn new(classes: &[String]) -> Self {
        let n = classes.len();
        Tally {
            classes: classes.to_vec(),
            confusion: vec![vec![0; n]; n],
        }
    }
    fn idx(&self, c: &str) -> usize {
        self.classes.iter().position(|x| x == c).unwrap_or(0)
    }
    pub fn add(&mut self, label: &str, pred: &str) {
        let (l, p) = (self.idx(label), self.idx(pred));
        self.confusion[l][p] += 1;
    }
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }
    pub fn correct(&self) -> usize {
        (0..self.classes.len()).map(|i| self.confusion[i][i]).sum()
    }
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }
    /// (correct, total) of each class that has labels.
    pub fn recall(&self) -> Vec<(String, usize, usize)> {
        (0..self.classes.len())
            .map(|i| {
                (
                    self.classes[i].clone(),
                    self.confusion[i][i],
                    self.confusion[i].iter().sum(),
                )
            })
            .filter(|r| r.2 > 0)
            .collect()
    }
    pub fn json(&self) -> Value {
        let conf: Map<String, Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    l.clone(),
                    Value::Object(
                        self.classes
                            .iter()
                            .enumerate()
                            .map(|(j, p)| (p.clone(), json!(self.confusion[i][j])))
                            .collect(),
                    ),
                )
            })
            .collect();
        let recall: Map<String, Value> = self
            .recall()
            .into_iter()
            .map(|(c, k, n)| {
                (
                    c,
                    json!({"correct": k, "total": n, "recall": k as f64 / n as f64}),
                )
            })
            .collect();
        json!({"total": self.total(), "correct": self.correct(), "accuracy": self.accuracy(), "recall": recall, "confusion": conf})
    }
    pub fn print(&self, o: &mut impl Write, indent: &str) {
        let w = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(5)
            .max(6);
        let _ = write!(o, "{indent}{:<w$}", "label\\got");
        for c in &self.classes {
            let _ = write!(o, " {c:>w$}");
        }
        let _ = writeln!(o);
        for (i, c) in self.classes.iter().enumerate() {
            if self.confusion[i].iter().sum::<usize>() == 0 {
                continue;
            }
            let _ = write!(o, "{indent}{c:<w$}");
            for n in &self.confusion[i] {
                let _ = write!(o, " {n:>w$}");
            }
            let _ = writeln!(o);
        }
    }
    pub fn summary(&self) -> String {
        let r: Vec<String> = self
            .recall()
            .iter()
            .map(|(c, k, n)| format!("{c} {k}/{n} = {:.1}%", 100.0 * *k as f64 / *n as f64))
            .collect();
        format!(
            "accuracy {}/{} = {:.1}%; recall: {}",
            self.correct(),
            self.total(),
            100.0 * self.accuracy(),
            r.join(", ")
        )
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
