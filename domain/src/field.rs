//! A field of an input that is not acceptable, named as the API names it.

/// A field of an input (a [`crate::model::DeviceSpec`], a threshold
/// profile) that is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's name as in the API.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}
