//! `loupe query`: runs HQL on a server over HTTP, or directly on a data directory, and prints a
//! table, CSV or JSON; errors are shown with the query line and a caret under the offending span.

use serde_json::Value;

/// Renders `line`/`column` of an HQL error like a compiler: the line, then carets.
pub fn render_error(src: &str, err: &Value) -> String {
    let message = err["message"].as_str().unwrap_or("query failed");
    let code = err["code"].as_str().unwrap_or("error");
    let mut out = format!("error[{code}]: {message}\n");
    if let (Some(line), Some(col)) = (err["line"].as_u64(), err["column"].as_u64()) {
        let text = src
            .lines()
            .nth(line.saturating_sub(1) as usize)
            .unwrap_or("");
        let span_len = match (err["span"][0].as_u64(), err["span"][1].as_u64()) {
            (Some(a), Some(b)) if b > a => src
                .get(a as usize..b as usize)
                .map(|s| s.chars().count())
                .unwrap_or(1),
            _ => 1,
        };
        let width = line.to_string().len();
        out.push_str(&format!("{:>width$} | {text}\n", line));
        out.push_str(&format!(
            "{:>width$} | {}{}\n",
            "",
            " ".repeat(col.saturating_sub(1) as usize),
            "^".repeat(span_len.clamp(1, text.chars().count().max(1)))
        ));
    }
    if let Some(h) = err["hint"].as_str() {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

pub async fn query(server: &str, key: Option<&str>, src: &str, format: &str) -> Result<(), String> {
    let wire = match format {
        "table" => "arrow",
        "csv" | "json" => format,
        other => return Err(format!("--format '{other}' is not one of table, csv, json")),
    };
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{}/v1/hql", server.trim_end_matches('/')))
        .json(&serde_json::json!({ "query": src, "format": wire }));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(render_error(src, &v["error"]).trim_end().to_string());
    }
    match format {
        "table" => {
            let reader = arrow::ipc::reader::StreamReader::try_new(
                std::io::Cursor::new(bytes.to_vec()),
                None,
            )
            .map_err(|e| format!("bad Arrow answer: {e}"))?;
            let batches: Vec<_> = reader
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad Arrow answer: {e}"))?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let table =
                arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
            println!("{table}");
            eprintln!("{rows} row(s)");
        }
        _ => print!("{}", String::from_utf8_lossy(&bytes)),
    }
    Ok(())
}

/// Runs HQL directly on a data directory (`loupe query --data-dir`): the Delta table plus the WAL
/// frames not flushed yet, read without opening anything for writing, so a server may be running
/// on the same directory. No API key is needed: whoever can read the files can read the data.
pub async fn query_dir(
    cfg: &crate::config::Config,
    org: &str,
    src: &str,
    format: &str,
) -> Result<(), String> {
    if !matches!(format, "table" | "csv" | "json") {
        return Err(format!(
            "--format '{format}' is not one of table, csv, json"
        ));
    }
    let snapshot = loupe_storage::Storage::read_only_snapshot(&cfg.storage)
        .await
        .map_err(|e| e.to_string())?;
    let spans = loupe_storage::Storage::read_only_snapshot_of(
        &cfg.storage,
        loupe_storage::TableSpec::SPANS,
    )
    .await
    .map_err(|e| e.to_string())?;
    let engine = loupe_query::QueryEngine::over_snapshot(snapshot, cfg.query.limits())
        .with_spans_snapshot(spans);
    let out = match engine.hql(org, src).await {
        Ok(out) => out,
        Err(e) => {
            let mut v = match &e {
                loupe_query::QueryError::Hql(h) => serde_json::to_value(h).unwrap_or_default(),
                _ => Value::Null,
            };
            if !v.is_object() {
                v = serde_json::json!({});
            }
            v["code"] = Value::from(e.code());
            v["message"] = Value::from(e.to_string());
            return Err(render_error(src, &v).trim_end().to_string());
        }
    };
    use loupe_query::format as f;
    match format {
        "table" => {
            println!("{}", f::to_table(&out.batches).map_err(|e| e.to_string())?);
            eprintln!("{} row(s)", out.stats.rows);
        }
        "csv" => {
            let csv = f::to_csv(&out.schema, &out.batches).map_err(|e| e.to_string())?;
            print!("{}", String::from_utf8_lossy(&csv));
        }
        _ => {
            let mut v = f::to_json(&out.schema, &out.batches).map_err(|e| e.to_string())?;
            v["stats"] = serde_json::to_value(&out.stats).unwrap_or_default();
            println!("{v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn caret_points_at_the_span() {
        let src = "requests\n| where modle == \"x\"";
        let err = serde_json::json!({"code":"hql.unknown_column","message":"unknown column 'modle'","line":2,"column":9,"span":[17,22],"hint":"did you mean 'model'?"});
        let out = super::render_error(src, &err);
        assert_eq!(
            out,
            "error[hql.unknown_column]: unknown column 'modle'\n2 | | where modle == \"x\"\n  |         ^^^^^\nhint: did you mean 'model'?\n"
        );
    }
}
