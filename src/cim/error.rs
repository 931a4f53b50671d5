//! CIM status codes (DSP0200) as a typed error.

use std::fmt;

/// A CIM error: a DSP0200 status code and a description for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CimError {
    pub code: u32,
    pub description: String,
    /// The request's XML is well-formed but not valid CIM-XML (a value that
    /// is not of its type, a required element or attribute missing): DSP0200
    /// answers it with HTTP 400 `request-not-valid`, not a CIM error.
    pub not_valid: bool,
}

macro_rules! codes {
    ($($n:literal $sym:ident $ctor:ident),* $(,)?) => {
        impl CimError {
            $(pub fn $ctor(d: impl Into<String>) -> CimError { CimError { code: $n, description: d.into(), not_valid: false } })*
            /// The symbolic name of a code, such as CIM_ERR_NOT_FOUND.
            pub fn symbol(code: u32) -> &'static str {
                match code { $($n => stringify!($sym),)* _ => "CIM_ERR_UNKNOWN" }
            }
        }
    };
}

codes! {
    1 CIM_ERR_FAILED failed,
    2 CIM_ERR_ACCESS_DENIED access_denied,
    3 CIM_ERR_INVALID_NAMESPACE invalid_namespace,
    4 CIM_ERR_INVALID_PARAMETER invalid_parameter,
    5 CIM_ERR_INVALID_CLASS invalid_class,
    6 CIM_ERR_NOT_FOUND not_found,
    7 CIM_ERR_NOT_SUPPORTED not_supported,
    8 CIM_ERR_CLASS_HAS_CHILDREN class_has_children,
    9 CIM_ERR_CLASS_HAS_INSTANCES class_has_instances,
    10 CIM_ERR_INVALID_SUPERCLASS invalid_superclass,
    11 CIM_ERR_ALREADY_EXISTS already_exists,
    12 CIM_ERR_NO_SUCH_PROPERTY no_such_property,
    13 CIM_ERR_TYPE_MISMATCH type_mismatch,
    14 CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED query_language_not_supported,
    15 CIM_ERR_INVALID_QUERY invalid_query,
    16 CIM_ERR_METHOD_NOT_AVAILABLE method_not_available,
    17 CIM_ERR_METHOD_NOT_FOUND method_not_found,
    20 CIM_ERR_NAMESPACE_NOT_EMPTY namespace_not_empty,
    21 CIM_ERR_INVALID_ENUMERATION_CONTEXT invalid_enumeration_context,
    22 CIM_ERR_INVALID_OPERATION_TIMEOUT invalid_operation_timeout,
    23 CIM_ERR_PULL_HAS_BEEN_ABANDONED pull_has_been_abandoned,
    24 CIM_ERR_PULL_CANNOT_BE_ABANDONED pull_cannot_be_abandoned,
    25 CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED filtered_enumeration_not_supported,
    26 CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED continuation_on_error_not_supported,
    27 CIM_ERR_SERVER_LIMITS_EXCEEDED server_limits_exceeded,
    28 CIM_ERR_SERVER_IS_SHUTTING_DOWN server_is_shutting_down,
}

impl CimError {
    /// The request is not valid CIM-XML (see [`CimError::not_valid`]).
    pub fn request_not_valid(d: impl Into<String>) -> CimError {
        CimError {
            code: 4,
            description: d.into(),
            not_valid: true,
        }
    }
}

impl fmt::Display for CimError {
    /// `CIM_ERR_X: description`, the form Pegasus uses and wbemcli prints
    /// without adding its own prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", CimError::symbol(self.code), self.description)
    }
}

impl std::error::Error for CimError {}
