//! Documented content blocks (the wire shape of weft-core's
//! `ContentBlock`), their schemas, and the documented SSE event.

use super::*;

/// A content block as documented (weft-core's `ContentBlock`, which has no
/// schema of its own; a test checks the two agree).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = ContentBlock)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) enum ContentBlockDoc {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The model's visible reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// The provider's signature over the block.
        #[serde(default)]
        signature: Option<String>,
    },
    /// A request by the model to run a tool.
    ToolCall {
        /// The call id, unique within the message.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments (any JSON, normally an object).
        #[schema(value_type = Value)]
        arguments: Value,
    },
    /// The result of a tool call, in a `tool` message.
    ToolResult {
        /// The id of the tool call this answers.
        call_id: String,
        /// The tool's output as text.
        output: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// An image.
    Image {
        /// Where the image's bytes are.
        source: ImageSourceDoc,
    },
}

/// Where an image block's bytes are (weft-core's `ImageSource`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = ImageSource)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) enum ImageSourceDoc {
    /// Base64-encoded bytes.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// The base64 data.
        data: String,
    },
    /// An URL the provider fetches itself.
    Url {
        /// The address of the image.
        url: String,
    },
}

/// Token usage of one model response (weft-core's `Usage`; the cache
/// counts are left out when zero).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) struct MessageUsage {
    /// Prompt tokens billed.
    input_tokens: u64,
    /// Completion tokens billed.
    output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    cache_read_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    cache_creation_tokens: Option<u64>,
}

/// Message content as a request sends it: a string, or at least one
/// content block.
pub(crate) fn content_in() -> RefOr<Schema> {
    content_schema(Some(1), "A string, or content blocks (at least one)")
}

/// Message content as the API sends it: a string for a text-only message,
/// content blocks otherwise.
pub(crate) fn content_out() -> RefOr<Schema> {
    content_schema(
        None,
        "A string for a text-only message, content blocks otherwise",
    )
}

fn content_schema(min_items: Option<usize>, description: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(description))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(Ref::from_schema_name("ContentBlock"))
                .min_items(min_items),
        )
        .into()
}

/// One Server-Sent Event of `/stream` and `/execute`: `event` names it,
/// `data` is JSON text, `id` is the log seq of a durable record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) struct SseEvent {
    /// The event name (`connected`, `record`, `done`, …; amplifierd's
    /// names with `?compat=amplifierd`).
    #[serde(default)]
    event: Option<String>,
    /// The payload: JSON text. A kernel event's data names its
    /// `session_id`; the events of a sub-agent session this session
    /// delegated to (the `task` tool) reach its stream too, their data
    /// tagged `child_session_id` with the child's id (a session's own
    /// events have no `child_session_id`; the child's records stay on the
    /// child's own stream).
    data: String,
    /// The seq of the record it carries, for `Last-Event-ID`.
    #[serde(default)]
    id: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weft_core::message::{ContentBlock, ImageSource, Usage};

    use super::*;

    /// The documented block shapes ([`ContentBlockDoc`]) accept every
    /// block weft-core writes, field for field (they deny unknown fields).
    #[test]
    fn documented_content_blocks_match_weft_core() {
        let blocks = [
            ContentBlock::text("a"),
            ContentBlock::Thinking {
                thinking: "t".into(),
                signature: Some("s".into()),
            },
            ContentBlock::ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: json!({"path": "x"}),
            },
            ContentBlock::ToolResult {
                call_id: "c1".into(),
                output: "o".into(),
                is_error: true,
            },
            ContentBlock::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "AA==".into(),
                },
            },
            ContentBlock::Image {
                source: ImageSource::Url {
                    url: "https://example.com/a.png".into(),
                },
            },
        ];
        for block in &blocks {
            // A new variant must be added here and to ContentBlockDoc.
            match block {
                ContentBlock::Text { .. }
                | ContentBlock::Thinking { .. }
                | ContentBlock::ToolCall { .. }
                | ContentBlock::ToolResult { .. }
                | ContentBlock::Image { .. } => {}
            }
            let wire = serde_json::to_value(block).expect("serialize");
            if let Err(e) = serde_json::from_value::<ContentBlockDoc>(wire.clone()) {
                panic!("{wire} does not match the documented ContentBlock: {e}");
            }
        }
        let usage = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_creation_tokens: 4,
        };
        let wire = serde_json::to_value(usage).expect("serialize");
        if let Err(e) = serde_json::from_value::<MessageUsage>(wire.clone()) {
            panic!("{wire} does not match the documented MessageUsage: {e}");
        }
    }
}
