//! `GET /v1/analytics/*`: the dashboard's JSON API (thin handlers over
//! `loupe_query::analytics`), the saved queries of `queries/`, and the dashboard
//! itself (static assets embedded in the binary, served at `/`).
//!
//! Every analytics route takes the same query-string filters (see docs/api.md):
//! `from`/`to` (RFC 3339) or `range` (`15m`, `24h`, `7d`, …; default `24h` ending now),
//! `model`, `provider`, `user` (repeatable), `status` (`ok|error|2xx|…`), `session`, and
//! `property.<key>=<value>` (repeatable).

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use loupe_model::{ErrorKind, PriceTable, Usage};
use loupe_query::analytics::{self as an, Filter};
use serde_json::{Value, json};

use crate::app::{Shared, authenticate};
use crate::error::ApiError;

/// The routes of this module (merged into the one route table in `app.rs`).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/analytics/summary", get(summary))
        .route("/v1/analytics/timeseries", get(timeseries))
        .route("/v1/analytics/breakdown", get(breakdown))
        .route("/v1/analytics/users", get(users))
        .route("/v1/analytics/sessions", get(sessions))
        .route("/v1/analytics/sessions/{id}", get(session))
        .route("/v1/analytics/requests", get(requests))
        .route("/v1/analytics/requests/{id}", get(request))
        .route("/v1/analytics/properties", get(property_keys))
        .route("/v1/analytics/properties/{key}", get(property_values))
        .route("/v1/queries", get(saved_queries))
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

/// Query-string parameters, in order (keys may repeat).
struct Params(Vec<(String, String)>);

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidInput, msg)
}

impl Params {
    fn parse(raw: Option<String>) -> Params {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn parsed<T: std::str::FromStr<Err = String>>(&self, k: &str) -> Result<Option<T>, ApiError> {
        self.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<T>().map_err(|e| bad(format!("{k}: {e}"))))
            .transpose()
    }

    fn number(&self, k: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(bad(format!(
                    "{k} must be a whole number from 0 to {max} (found {v:?})"
                ))),
            },
        }
    }

    /// `limit` (default 50, at most 500) and `offset` (at most [`an::MAX_OFFSET`]).
    fn page(&self) -> Result<(usize, usize), ApiError> {
        Ok((
            self.number("limit", 50, 500)?.max(1),
            self.number("offset", 0, an::MAX_OFFSET)?,
        ))
    }

    fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| {
                        bad(format!(
                            "{k} must be an RFC 3339 time such as 2026-11-20T12:00:00Z (found {v:?}: {e})"
                        ))
                    })
            })
            .transpose()
    }

    fn filter(&self) -> Result<Filter, ApiError> {
        const MAX_RANGE: i64 = 400 * 86_400 * 1_000_000;
        let known = [
            "from",
            "to",
            "range",
            "model",
            "provider",
            "user",
            "status",
            "session",
            "by",
            "metric",
            "top",
            "limit",
            "offset",
            "sort",
            "cursor",
            "bucket",
            "at",
            "percentiles",
        ];
        for (k, _) in &self.0 {
            if !known.contains(&k.as_str()) && !k.starts_with("property.") {
                return Err(bad(format!(
                    "unknown parameter {k:?}: filters are from, to, range, model, provider, user, status, session, property.<key>"
                )));
            }
        }
        // Without `to`, the range ends at the next whole hour: same rows (nothing is newer than
        // now), and whole-hour bounds let counts and costs come from the roll-up alone.
        const HOUR: i64 = 3_600_000_000;
        let to = self.time("to")?.unwrap_or_else(|| {
            let now = Utc::now().timestamp_micros();
            (now.div_euclid(HOUR) + 1) * HOUR
        });
        let from = match (
            self.time("from")?,
            self.get("range").filter(|v| !v.is_empty()),
        ) {
            (Some(f), None) => f,
            (None, Some(r)) => to.saturating_sub(duration(r)?),
            (None, None) => to - 86_400 * 1_000_000,
            (Some(_), Some(_)) => return Err(bad("pass either from or range, not both")),
        };
        if from >= to || to - from > MAX_RANGE {
            return Err(bad(
                "the time range must have from < to and span at most 400 days",
            ));
        }
        let properties = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("property.")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect::<Vec<_>>();
        if properties.iter().any(|(k, _)| k.is_empty()) {
            return Err(bad("property filters are written property.<key>=<value>"));
        }
        Ok(Filter {
            from,
            to,
            models: self.all("model"),
            providers: self.all("provider"),
            users: self.all("user"),
            status: self.parsed("status")?,
            properties,
            session: self
                .get("session")
                .filter(|s| !s.is_empty())
                .map(String::from),
        })
    }
}

/// `15m`, `24h`, `7d`, `2w` → microseconds.
fn duration(s: &str) -> Result<i64, ApiError> {
    let err = || {
        bad(format!(
            "range must be a number and a unit m, h, d or w, such as 24h or 7d (found {s:?})"
        ))
    };
    let unit = s.chars().last().ok_or_else(err)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| err())?;
    let secs = match unit {
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(err()),
    };
    if n <= 0 || n > 400 * 86_400 / secs {
        return Err(err());
    }
    Ok(n * secs * 1_000_000)
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// What every analytics handler starts from: the caller's org (authenticated before anything
/// else is read) and the query-string parameters.
struct Call {
    st: Shared,
    org: String,
    p: Params,
}

impl FromRequestParts<Shared> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Call, ApiError> {
        let org = authenticate(st, &parts.headers)?;
        Ok(Call {
            st: st.clone(),
            org,
            p: Params::parse(parts.uri.query().map(String::from)),
        })
    }
}

impl Call {
    fn q(&self) -> &loupe_query::QueryEngine {
        &self.st.query
    }
}

async fn summary(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let pct = c.p.parsed("percentiles")?.unwrap_or_default();
    Ok(json(an::summary(c.q(), &c.org, &f, pct).await?))
}

async fn timeseries(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let bucket =
        c.p.get("bucket")
            .filter(|v| !v.is_empty())
            .map(duration_secs)
            .transpose()?;
    let pct = c.p.parsed("percentiles")?.unwrap_or_default();
    Ok(json(an::timeseries(c.q(), &c.org, &f, bucket, pct).await?))
}

fn duration_secs(s: &str) -> Result<i64, ApiError> {
    duration(s)
        .map(|d| d / 1_000_000)
        .map_err(|_| bad(format!("bucket must be like 5m, 1h or 1d (found {s:?})")))
}

async fn breakdown(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let by: an::Dimension = c
        .p
        .parsed("by")?
        .ok_or_else(|| bad("by is required: model, provider, user, status or property.<key>"))?;
    let metric = c.p.parsed("metric")?.unwrap_or(an::Metric::Requests);
    let top = c.p.number("top", 10, 100)?.max(1);
    Ok(json(
        an::breakdown(c.q(), &c.org, &f, &by, metric, top).await?,
    ))
}

async fn users(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let sort = c.p.parsed("sort")?.unwrap_or(an::UserSort::Cost);
    let (limit, offset) = c.p.page()?;
    Ok(json(
        an::users(c.q(), &c.org, &f, sort, limit, offset).await?,
    ))
}

async fn sessions(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let (limit, offset) = c.p.page()?;
    Ok(json(an::sessions(c.q(), &c.org, &f, limit, offset).await?))
}

async fn session(c: Call, Path(id): Path<String>) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    Ok(json(an::session(c.q(), &c.org, &f, &id).await?))
}

async fn requests(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let cursor: Option<an::Cursor> = c.p.parsed("cursor")?;
    let limit = c.p.number("limit", 50, 500)?.max(1);
    Ok(json(
        an::requests(c.q(), &c.org, &f, cursor.as_ref(), limit).await?,
    ))
}

async fn request(c: Call, Path(id): Path<String>) -> Result<Response, ApiError> {
    let at = c.p.time("at")?;
    let row = an::request(c.q(), &c.org, &id, at).await?;
    let breakdown = cost_breakdown(&c.st.prices, &row);
    Ok(json(json!({ "request": row, "cost_breakdown": breakdown })))
}

/// The cost split into its token kinds at the bundled/override prices (null when the model
/// has no price, or a tiered price applies: then only the total is exact).
fn cost_breakdown(prices: &PriceTable, row: &serde_json::Map<String, Value>) -> Value {
    let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default();
    let n = |k: &str| row.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
    let Some((_, price)) = prices.lookup(s("provider"), s("model")) else {
        return Value::Null;
    };
    if price.tier_for(n("prompt_tokens")).is_some() {
        return Value::Null;
    }
    let (p, cr, cw, c, r) = (
        n("prompt_tokens"),
        n("cache_read_tokens"),
        n("cache_write_tokens"),
        n("completion_tokens"),
        n("reasoning_tokens"),
    );
    let part = |u: Usage| price.cost_of(&u).map(|d| d.normalize().to_string());
    let parts = [
        (
            "input",
            Usage {
                prompt_tokens: (p - cr - cw).max(0),
                ..Usage::default()
            },
        ),
        (
            "cache_read",
            Usage {
                prompt_tokens: cr,
                cache_read_tokens: cr,
                ..Usage::default()
            },
        ),
        (
            "cache_write",
            Usage {
                prompt_tokens: cw,
                cache_write_tokens: cw,
                ..Usage::default()
            },
        ),
        (
            "output",
            Usage {
                completion_tokens: (c - r).max(0),
                ..Usage::default()
            },
        ),
        (
            "reasoning",
            Usage {
                completion_tokens: r,
                reasoning_tokens: r,
                ..Usage::default()
            },
        ),
    ];
    let mut out = serde_json::Map::new();
    for (k, u) in parts {
        out.insert(k.into(), part(u).map_or(Value::Null, Value::String));
    }
    Value::Object(out)
}

async fn property_keys(c: Call) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let limit = c.p.number("limit", 100, 1000)?.max(1);
    Ok(json(an::property_keys(c.q(), &c.org, &f, limit).await?))
}

async fn property_values(c: Call, Path(key): Path<String>) -> Result<Response, ApiError> {
    let f = c.p.filter()?;
    let limit = c.p.number("limit", 20, 1000)?.max(1);
    Ok(json(
        an::property_values(c.q(), &c.org, &f, &key, limit).await?,
    ))
}

/// The saved queries shipped in `queries/` (embedded at build time).
#[derive(rust_embed::RustEmbed)]
#[folder = "../../queries/"]
struct SavedQueries;

async fn saved_queries(_: Call) -> Result<Response, ApiError> {
    let mut names: Vec<_> = SavedQueries::iter()
        .filter(|n| n.ends_with(".hql"))
        .collect();
    names.sort();
    let queries: Vec<Value> = names
        .iter()
        .filter_map(|n| {
            let file = SavedQueries::get(n)?;
            let text = String::from_utf8_lossy(&file.data).into_owned();
            let title = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("//"))
                .map(|l| l.trim().to_string());
            Some(json!({
                "name": n.trim_end_matches(".hql"),
                "title": title,
                "query": text,
            }))
        })
        .collect();
    Ok(json(json!({ "queries": queries })))
}

/// The dashboard: plain ES modules, CSS and a vendored chart library, embedded in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

fn serve_asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_string();
            let cache = if path == "index.html" {
                "no-cache"
            } else {
                "public, max-age=300"
            };
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, cache.to_string()),
                    (
                        header::HeaderName::from_static("x-content-type-options"),
                        "nosniff".to_string(),
                    ),
                ],
                file.data,
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": format!("no dashboard asset {path:?}")}})),
        )
            .into_response(),
    }
}

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve_asset(&path)
}
