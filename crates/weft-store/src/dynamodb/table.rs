//! The table: checked on first use, created (keys, the three indexes, the
//! TTL attribute) when the URL allows it, else a clear error naming it.
//!
//! This module must not know sessions or records.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use weft_core::store::StoreError;

use super::{DynamoOptions, backend, build_err};

/// The index listing one project's sessions newest first.
pub(super) const BY_PROJECT: &str = "by-project";
/// The index listing every session newest first.
pub(super) const BY_UPDATE: &str = "by-update";
/// The index of session ids (prefix lookups).
pub(super) const BY_ID: &str = "by-id";

/// The error for a table that does not exist.
pub(super) fn missing(options: &DynamoOptions) -> StoreError {
    StoreError::Invalid(format!(
        "the DynamoDB table {:?} does not exist in region {}: create it, or add create=true to the store URL to let weft create it",
        options.table, options.region
    ))
}

fn sdk_text<
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

/// Checks that the table exists (waiting while it is being created);
/// creates it when it does not and `options.create` allows it.
pub(super) async fn ensure(client: &Client, options: &DynamoOptions) -> Result<(), StoreError> {
    let start = Instant::now();
    loop {
        match client
            .describe_table()
            .table_name(&options.table)
            .send()
            .await
        {
            Ok(out) => {
                let status = out.table().and_then(|t| t.table_status()).cloned();
                match status {
                    Some(TableStatus::Active) | None => return Ok(()),
                    Some(_) if start.elapsed() < Duration::from_secs(120) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Some(s) => {
                        return Err(backend(
                            options,
                            format!("table {:?} is {s:?}, not ACTIVE", options.table),
                        ));
                    }
                }
            }
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if !not_found {
                    return Err(backend(
                        options,
                        format!(
                            "cannot reach table {:?} at {}: {}",
                            options.table,
                            options.endpoint.as_deref().unwrap_or("AWS"),
                            sdk_text(&e)
                        ),
                    ));
                }
                if !options.create {
                    return Err(missing(options));
                }
                create(client, options).await?;
            }
        }
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_err)
}

fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_err)
}

/// Creates the table (on-demand billing) and enables TTL on `expires_at`.
async fn create(client: &Client, options: &DynamoOptions) -> Result<(), StoreError> {
    let mut req = client
        .create_table()
        .table_name(&options.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(index(BY_PROJECT, "project", "lkey")?)
        .global_secondary_indexes(index(BY_UPDATE, "all", "lkey")?)
        .global_secondary_indexes(index(BY_ID, "all", "sid")?);
    for attr in ["pk", "sk", "project", "lkey", "all", "sid"] {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        // Another process created it meanwhile.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(backend(
                options,
                format!("cannot create table {:?}: {}", options.table, sdk_text(&e)),
            ));
        }
    }
    // TTL can only be set on an ACTIVE table.
    let start = Instant::now();
    loop {
        let out = client
            .describe_table()
            .table_name(&options.table)
            .send()
            .await
            .map_err(|e| backend(options, sdk_text(&e)))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(backend(
                options,
                format!(
                    "table {:?} did not become ACTIVE within 120 s",
                    options.table
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expires_at")
        .build()
        .map_err(build_err)?;
    if let Err(e) = client
        .update_time_to_live()
        .table_name(&options.table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        // Already enabled (by a racing creator) is fine; anything else is
        // worth a warning, not a failure: weft checks expiry itself.
        tracing::warn!(table = %options.table, error = %sdk_text(&e), "cannot enable TTL on the dynamodb table");
    }
    tracing::info!(table = %options.table, "created the dynamodb table");
    Ok(())
}
