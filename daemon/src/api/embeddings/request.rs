//! OpenAI's embeddings request: `input` as one string, a list of strings, one list of
//! token ids or a list of them; `encoding_format` `float` or `base64`; `dimensions`
//! where the model has that width. Every refusal is a 400 in OpenAI's error shape
//! naming the `param`; `user` is accepted and changes nothing.

use serde::Deserialize;

use crate::api::{ApiError, ErrorKind, Family};

/// Inputs per request at most (OpenAI's own bound).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    model: String,
    input: RawInput,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawInput {
    One(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

/// What the client sent to be embedded.
#[derive(Debug, PartialEq)]
pub enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<i64>>),
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Texts(t) => t.len(),
            Inputs::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A checked request.
#[derive(Debug)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Inputs,
    pub base64: bool,
    pub dimensions: Option<u64>,
}

pub fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message, Family::OpenAi).with_param(param)
}

/// Parses and checks a request body.
pub fn parse(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("the body is not an embeddings request: {e}"),
            Family::OpenAi,
        )
        .with_code("invalid_json")
    })?;
    let inputs = match raw.input {
        RawInput::One(t) => Inputs::Texts(vec![t]),
        RawInput::Texts(t) => Inputs::Texts(t),
        RawInput::Tokens(t) => Inputs::Tokens(vec![t]),
        RawInput::TokenLists(t) => Inputs::Tokens(t),
    };
    if inputs.is_empty() {
        return Err(
            bad("input", "input is empty: send a string or a list of them")
                .with_code("empty_input"),
        );
    }
    if inputs.len() > MAX_INPUTS {
        return Err(bad(
            "input",
            format!(
                "input has {} items; send at most {MAX_INPUTS} per request",
                inputs.len()
            ),
        )
        .with_code("too_many_inputs"));
    }
    let base64 = match raw.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(
                "encoding_format",
                format!("encoding_format {other:?} is not one of \"float\", \"base64\""),
            ));
        }
    };
    Ok(EmbeddingsRequest {
        model: raw.model,
        inputs,
        base64,
        dimensions: raw.dimensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_openai_defines_parses() {
        let p = |s: &str| parse(s.as_bytes()).unwrap();
        assert_eq!(
            p(r#"{"model":"m","input":"hi"}"#).inputs,
            Inputs::Texts(vec!["hi".into()])
        );
        assert_eq!(
            p(r#"{"model":"m","input":["a","b"]}"#).inputs,
            Inputs::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            p(r#"{"model":"m","input":[1,2]}"#).inputs,
            Inputs::Tokens(vec![vec![1, 2]])
        );
        assert_eq!(
            p(r#"{"model":"m","input":[[1],[2,3]]}"#).inputs,
            Inputs::Tokens(vec![vec![1], vec![2, 3]])
        );
        let r = p(
            r#"{"model":"m","input":"x","encoding_format":"base64","dimensions":384,"user":"u"}"#,
        );
        assert!(r.base64);
        assert_eq!(r.dimensions, Some(384));
    }

    #[test]
    fn refusals_name_their_param_and_code() {
        let e = |s: &str| parse(s.as_bytes()).unwrap_err();
        assert_eq!(e(r#"{"model":"m","input":[]}"#).code(), "empty_input");
        assert_eq!(
            e(r#"{"model":"m","input":"x","encoding_format":"f16"}"#).code(),
            "invalid_request"
        );
        assert_eq!(
            e(r#"{"model":"m","input":"x","truncate":true}"#).code(),
            "invalid_json"
        );
        assert_eq!(e(r#"{"model":"m","input":{"a":1}}"#).code(), "invalid_json");
        let many = format!(
            r#"{{"model":"m","input":[{}]}}"#,
            vec!["\"x\""; MAX_INPUTS + 1].join(",")
        );
        assert_eq!(e(&many).code(), "too_many_inputs");
    }
}
