//! Update expressions applied to the item as it was, to estimate its size after.
//!
//! `SET a = :v`, `SET a = b + :v` / `- :v`, `if_not_exists(a, :v)`, `list_append(a, :v)`
//! (nested in one another too), `ADD a :v` (numbers and sets), `REMOVE a`; paths are taken
//! at their top-level attribute (a nested `SET a.b = :v` is not modelled: this layout has
//! none).

use super::{Attrs, Value};

const CLAUSES: [&str; 4] = ["SET", "REMOVE", "ADD", "DELETE"];

struct Context {
    names: Attrs,
    values: Attrs,
}

impl Context {
    fn attribute(&self, path: &str) -> String {
        let top = path.trim().split(['.', '[']).next().unwrap_or("");
        match self.names.get(top).and_then(Value::as_str) {
            Some(name) => name.to_string(),
            None => top.to_string(),
        }
    }

    /// The value of an operand: a placeholder, a path, a function or a sum.
    fn eval(&self, item: &Attrs, operand: &str) -> Option<Value> {
        let operand = operand.trim();
        if let Some((left, sign, right)) = split_arithmetic(operand) {
            let number = |t: &str| {
                self.eval(item, t)
                    .and_then(|v| v["N"].as_str().and_then(|n| n.parse::<i128>().ok()))
                    .unwrap_or(0)
            };
            let (a, b) = (number(left), number(right));
            let n = if sign == '+' { a + b } else { a - b };
            return Some(serde_json::json!({ "N": n.to_string() }));
        }
        if let Some(args) = call_args(operand, "if_not_exists") {
            let arg = |i: usize| args.get(i).and_then(|a| self.eval(item, a));
            return arg(0).or_else(|| arg(1));
        }
        if let Some(args) = call_args(operand, "list_append") {
            let joined: Vec<Value> = args
                .iter()
                .filter_map(|a| self.eval(item, a))
                .filter_map(|l| l["L"].as_array().cloned())
                .flatten()
                .collect();
            return Some(serde_json::json!({ "L": joined }));
        }
        if operand.starts_with(':') {
            self.values.get(operand).cloned()
        } else {
            item.get(&self.attribute(operand)).cloned()
        }
    }
}

pub fn apply(mut item: Attrs, request: &Value) -> Attrs {
    let context = Context {
        names: request["ExpressionAttributeNames"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        values: request["ExpressionAttributeValues"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let expression = request["UpdateExpression"].as_str().unwrap_or("");
    for (clause, body) in clauses(expression) {
        for action in split_top(&body) {
            match clause.as_str() {
                "SET" => {
                    let Some((path, rhs)) = action.split_once('=') else {
                        continue;
                    };
                    if let Some(value) = context.eval(&item, rhs) {
                        item.insert(context.attribute(path), value);
                    }
                }
                "ADD" => {
                    let mut parts = action.split_whitespace();
                    let (Some(path), Some(token)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let Some(added) = context.eval(&item, token) else {
                        continue;
                    };
                    let name = context.attribute(path);
                    let merged = match (item.get(&name), added.as_object()) {
                        (Some(current), Some(a)) if a.contains_key("N") => {
                            let n =
                                |v: &Value| v["N"].as_str().and_then(|n| n.parse::<i128>().ok());
                            let sum = n(current).unwrap_or(0) + n(&added).unwrap_or(0);
                            serde_json::json!({ "N": sum.to_string() })
                        }
                        (Some(current), Some(a)) => {
                            let (kind, new) = a.iter().next().expect("a set");
                            let mut all: Vec<Value> =
                                current[kind].as_array().cloned().unwrap_or_default();
                            for v in new.as_array().into_iter().flatten() {
                                if !all.contains(v) {
                                    all.push(v.clone());
                                }
                            }
                            serde_json::json!({ kind.clone(): all })
                        }
                        _ => added,
                    };
                    item.insert(name, merged);
                }
                "REMOVE" if !action.contains(['.', '[']) => {
                    item.remove(&context.attribute(&action));
                }
                // DELETE (elements from a set): the item only shrinks; keep it as is.
                _ => {}
            }
        }
    }
    item
}

/// `a + b` or `a - b` at the top level (outside parentheses): the last such sign.
fn split_arithmetic(operand: &str) -> Option<(&str, char, &str)> {
    let mut depth = 0i32;
    let mut at = None;
    for (i, c) in operand.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '+' | '-' if depth == 0 => at = Some((i, c)),
            _ => {}
        }
    }
    let (i, sign) = at?;
    Some((&operand[..i], sign, &operand[i + 1..]))
}

/// `(CLAUSE, its actions)` in order of appearance.
fn clauses(expression: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for token in expression.split_whitespace() {
        let upper = token.to_ascii_uppercase();
        if CLAUSES.contains(&upper.as_str()) {
            out.push((upper, String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(token);
        }
    }
    out
}

/// Splits on the commas outside parentheses.
fn split_top(body: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("one part").push(c);
    }
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The arguments of `function(…)`, split on the commas outside nested parentheses.
fn call_args(operand: &str, function: &str) -> Option<Vec<String>> {
    let inner = operand.strip_prefix(function)?.trim().strip_prefix('(')?;
    let inner = inner.strip_suffix(')')?;
    Some(split_top(inner))
}
