//! The message table (LionAGI's `to_df`) as CSV and Apache Parquet, so
//! pandas and polars read a session directly.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use weft_core::branches::{TABLE_COLUMNS, TableRow};

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn columns(row: &TableRow) -> [&str; 8] {
    [
        &row.created_at,
        &row.role,
        &row.content,
        &row.id,
        &row.sender,
        &row.recipient,
        &row.branch,
        &row.metadata,
    ]
}

/// Writes the rows as CSV (RFC 4180 quoting) with a header line.
pub fn write_csv(rows: &[TableRow], out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "{}", TABLE_COLUMNS.join(","))?;
    for row in rows {
        let fields: Vec<String> = columns(row).iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

/// Writes the rows as a Parquet file (string columns, snappy compressed).
pub fn write_parquet(rows: &[TableRow], path: &Path) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(
        TABLE_COLUMNS
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..TABLE_COLUMNS.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| columns(r)[i]),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).context("cannot build the table")?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .context("cannot start the Parquet writer")?;
    writer
        .write(&batch)
        .context("cannot write the Parquet rows")?;
    writer.close().context("cannot finish the Parquet file")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn rows() -> Vec<TableRow> {
        vec![
            TableRow {
                created_at: "2026-01-01T00:00:00+00:00".into(),
                role: "user".into(),
                content: "hello, \"world\"\nline two".into(),
                id: "m1".into(),
                sender: "user".into(),
                recipient: String::new(),
                branch: "main".into(),
                metadata: "{}".into(),
            },
            TableRow {
                created_at: "2026-01-01T00:00:01+00:00".into(),
                role: "assistant".into(),
                content: "hi".into(),
                id: "m2".into(),
                sender: "main".into(),
                recipient: String::new(),
                branch: "main".into(),
                metadata: "{\"clone_from\":\"x\"}".into(),
            },
        ]
    }

    #[test]
    fn csv_quotes_fields() {
        let mut out = Vec::new();
        write_csv(&rows(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("created_at,role,content,id,sender,recipient,branch,metadata\n"));
        assert!(text.contains("\"hello, \"\"world\"\"\nline two\""));
    }

    #[test]
    fn parquet_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_parquet(&rows(), &path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, TABLE_COLUMNS);
        let role = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(role.value(1), "assistant");
        assert_eq!(role.len(), 2);
    }
}
