//! The typed syntax tree of an HQL query. Every node carries the byte [`Span`] of the source it
//! was parsed from, so later stages (the planner) can point their own errors at the right place.
//!
//! The tree is purely syntactic: names are not resolved, calls are not checked against a function
//! list and no types are known. A few things are normalised while building so the planner does not
//! have to: `iff(c, a, b)` and `case(...)` become [`ExprKind::Case`], a minus sign directly in front
//! of a number or duration is folded into the literal, `properties.a.b` becomes the key `"a.b"`,
//! and sort keys carry their resolved direction and null placement.

use serde::Serialize;
use serde::ser::{SerializeTuple, Serializer};

/// A half-open byte range `start..end` into the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text this span covers (empty if it does not fall on `src`'s char boundaries).
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }
}

/// Serialized as `[start, end]`, the shape of the `span` field in error bodies.
impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.start)?;
        t.serialize_element(&self.end)?;
        t.end()
    }
}

/// A name as written: a column, alias, function or operator name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ident {
    /// The name with backticks removed and ``` `` ``` unescaped.
    pub name: String,
    /// Written in backticks (`` `my column` ``).
    pub quoted: bool,
    pub span: Span,
}

/// The table a query reads: `requests`, later `spans`, …
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRef {
    pub name: String,
    pub quoted: bool,
    pub span: Span,
}

/// A whole query: a table followed by `| operator` stages, applied left to right.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    pub source: TableRef,
    pub ops: Vec<Op>,
    pub span: Span,
}

/// One pipeline stage. `span` runs from the operator keyword to the end of its last argument
/// (the `|` before it is not included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub kind: OpKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    /// `where <predicate>` (alias `filter`): keep rows where the predicate is true.
    Where { predicate: Expr },
    /// `summarize [aggregates] [by groups]`: at least one of the two lists is non-empty.
    Summarize {
        aggregates: Vec<NamedExpr>,
        by: Vec<NamedExpr>,
    },
    /// `extend name = expr, …`: add (or replace) columns, keep all others.
    Extend { columns: Vec<NamedExpr> },
    /// `project col, new = old, name = expr, …`: exactly these columns, in this order.
    Project { columns: Vec<NamedExpr> },
    /// `project-away col, …`: all columns except these.
    ProjectAway { columns: Vec<Ident> },
    /// `project-rename new = old, …`: rename, keep all columns.
    ProjectRename { renames: Vec<Rename> },
    /// `sort by key [asc|desc] [nulls first|last], …` (alias `order by`).
    Sort { keys: Vec<SortKey> },
    /// `take N` (alias `limit N`).
    Take { count: u64 },
    /// `top N by key [asc|desc] [nulls first|last], …`: sort then take.
    Top { count: u64, by: Vec<SortKey> },
    /// `distinct col, …`: the distinct combinations of these columns.
    Distinct { columns: Vec<NamedExpr> },
    /// `count`: one row with one column `count`, the number of input rows.
    Count,
}

impl OpKind {
    /// The canonical operator name (`sort` for `order by`, `take` for `limit`, …).
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Where { .. } => "where",
            OpKind::Summarize { .. } => "summarize",
            OpKind::Extend { .. } => "extend",
            OpKind::Project { .. } => "project",
            OpKind::ProjectAway { .. } => "project-away",
            OpKind::ProjectRename { .. } => "project-rename",
            OpKind::Sort { .. } => "sort",
            OpKind::Take { .. } => "take",
            OpKind::Top { .. } => "top",
            OpKind::Distinct { .. } => "distinct",
            OpKind::Count => "count",
        }
    }
}

/// `new = old` in `project-rename`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rename {
    pub new: Ident,
    pub old: Ident,
    pub span: Span,
}

/// `[name =] expr` in `summarize`, `by`, `extend`, `project` and `distinct`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedExpr {
    pub alias: Option<Ident>,
    pub expr: Expr,
    pub span: Span,
}

impl NamedExpr {
    /// The output column name: the alias if given, else [`Expr::default_name`]. `None` means the
    /// planner numbers the column (`column1`, `column2`, … by position in the list).
    pub fn output_name(&self) -> Option<String> {
        match &self.alias {
            Some(a) => Some(a.name.clone()),
            None => self.expr.default_name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NullsOrder {
    First,
    Last,
}

/// One key of `sort by` / `top N by`. Defaults are already applied: `desc` when no direction is
/// written (as in KQL), and nulls last whatever the direction (unlike KQL, so `top 10 by ttft_ms
/// asc` is not filled with rows that have no value).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SortKey {
    pub expr: Expr,
    pub order: SortOrder,
    pub nulls: NullsOrder,
    pub span: Span,
}

/// An expression node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum ExprKind {
    Literal {
        value: Literal,
    },
    /// A column by name (`model`, `` `weird name` ``).
    Column {
        name: Ident,
    },
    /// A key of a map column: `properties.Environment`, `properties["Name with spaces"]`.
    /// Dotted paths join with `.`: `attributes.http.method` is the key `"http.method"`.
    Property {
        column: Ident,
        key: String,
        key_span: Span,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `expr between (low .. high)`, both ends inclusive; `!between` / `not between` negate.
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `expr in (a, b, …)`; `!in` / `not in` negate; `in~` compares strings case-insensitively.
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    /// `expr is null` / `expr is not null`.
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `expr contains pattern` and friends. `case_sensitive` is false for the plain operators and
    /// true for the `_cs` ones and for `matches regex` (use `(?i)` in the pattern).
    StringMatch {
        op: StringOp,
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_sensitive: bool,
    },
    /// `name(args…)`: scalar and aggregate functions alike; the planner decides which is which.
    Call {
        name: Ident,
        args: Vec<Expr>,
    },
    /// `case(c1, v1, c2, v2, …, else)` and `iff(c, a, b)`: the first true condition's value.
    Case {
        branches: Vec<CaseBranch>,
        otherwise: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseBranch {
    pub when: Expr,
    pub then: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryOp {
    /// `not x`
    Not,
    /// `-x`
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Or,
    And,
    /// `==` (case-sensitive for strings)
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `=~`: equal, ignoring case
    EqIgnoreCase,
    /// `!~`: not equal, ignoring case
    NotEqIgnoreCase,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    /// `/`: always a floating-point result (see docs/hql.md).
    Div,
    /// `%`
    Mod,
}

impl BinaryOp {
    /// The operator as written in canonical HQL.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::NotEq => "!=",
            BinaryOp::EqIgnoreCase => "=~",
            BinaryOp::NotEqIgnoreCase => "!~",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::EqIgnoreCase
                | BinaryOp::NotEqIgnoreCase
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringOp {
    Contains,
    StartsWith,
    EndsWith,
    /// `matches regex` (RE2-style syntax as implemented by the engine's regex functions).
    MatchesRegex,
}

impl StringOp {
    pub fn keyword(self) -> &'static str {
        match self {
            StringOp::Contains => "contains",
            StringOp::StartsWith => "startswith",
            StringOp::EndsWith => "endswith",
            StringOp::MatchesRegex => "matches regex",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Literal {
    Null,
    Bool(bool),
    /// A whole number without a suffix that fits an `i64`.
    Int(i64),
    /// A number with a `.` or an exponent. `text` is the literal as written (with a folded
    /// minus sign), so the planner can build an exact decimal when it meets a decimal column
    /// such as `cost_usd`.
    Float {
        value: f64,
        text: String,
    },
    String(String),
    /// `30s`, `5m`, `1.5h`, `7d`, … in microseconds (may be negative: `-1h`).
    Duration(i64),
    /// `datetime(…)`, in microseconds since 1970-01-01T00:00:00Z.
    DateTime(i64),
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }

    /// The column name KQL-style tools would give this expression when it is not aliased:
    /// a column keeps its name, a property its key, `bin(x, …)` the name of `x`, `f(x, …)` becomes
    /// `f_x` (`sum_cost_usd`, `p95_latency_ms`, `percentile_latency_ms_95`) and `f()` becomes `f`.
    /// Anything else has no natural name (`None`).
    pub fn default_name(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Column { name } => Some(name.name.clone()),
            ExprKind::Property { key, .. } => Some(key.clone()),
            ExprKind::Call { name, args } => {
                let f = name.name.as_str();
                let first = args.first().and_then(Expr::default_name);
                if f == "bin" || f == "floor" {
                    return first;
                }
                match first {
                    None if args.is_empty() => Some(f.to_string()),
                    None => Some(f.to_string()),
                    Some(arg) => {
                        let mut n = format!("{f}_{arg}");
                        if f == "percentile"
                            && let Some(Expr {
                                kind:
                                    ExprKind::Literal {
                                        value: Literal::Int(p),
                                    },
                                ..
                            }) = args.get(1)
                        {
                            n.push_str(&format!("_{p}"));
                        }
                        Some(n)
                    }
                }
            }
            _ => None,
        }
    }

    /// Whether this is a call of `name`.
    pub fn is_call(&self, function: &str) -> bool {
        matches!(&self.kind, ExprKind::Call { name, .. } if name.name == function)
    }
}
