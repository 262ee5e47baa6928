//! Statement arguments both drivers bind: the few kinds of value ward's
//! shared statements take, so a statement and its arguments are written
//! once ([`super::operations`]) and bound by either backend.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// One argument of a statement.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg<'a> {
    /// A 64-bit integer (`BIGINT`).
    Int(i64),
    /// A nullable 64-bit integer.
    OptInt(Option<i64>),
    /// A 32-bit integer (`INTEGER`: intervals, thresholds).
    Int32(i32),
    /// Text.
    Text(&'a str),
    /// Nullable text.
    OptText(Option<&'a str>),
    /// A boolean.
    Flag(bool),
    /// A list of ids, for [`super::tx::Query::ID_IN_LIST`]: an array on
    /// PostgreSQL, a JSON array on SQLite.
    Ids(&'a [i64]),
}

impl Arg<'_> {
    /// A 32-bit column's value (larger ones are refused before they get
    /// here).
    pub(super) fn int32(value: impl Into<u32>) -> Self {
        Arg::Int32(i32::try_from(value.into()).unwrap_or(i32::MAX))
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Arg::Int(value) => ToSql::to_sql(value, ty, out),
            Arg::OptInt(value) => ToSql::to_sql(value, ty, out),
            Arg::Int32(value) => ToSql::to_sql(value, ty, out),
            Arg::Text(value) => ToSql::to_sql(value, ty, out),
            Arg::OptText(value) => ToSql::to_sql(value, ty, out),
            Arg::Flag(value) => ToSql::to_sql(value, ty, out),
            Arg::Ids(ids) => ToSql::to_sql(ids, ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <&str as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
            || <&[i64] as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(value) => rusqlite::ToSql::to_sql(value),
            Arg::OptInt(value) => rusqlite::ToSql::to_sql(value),
            Arg::Int32(value) => rusqlite::ToSql::to_sql(value),
            Arg::Text(value) => rusqlite::ToSql::to_sql(value),
            Arg::OptText(value) => rusqlite::ToSql::to_sql(value),
            Arg::Flag(value) => rusqlite::ToSql::to_sql(value),
            Arg::Ids(ids) => Ok(rusqlite::types::ToSqlOutput::from(
                serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()),
            )),
        }
    }
}
