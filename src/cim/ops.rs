//! Typed intrinsic operations (DSP0200 §5.3). A request is parsed into an
//! [`Op`] before anything runs; the dispatcher only ever sees `Op`.
//!
//! Parameter rules: names match case-insensitively; an unknown IPARAMVALUE
//! is CIM_ERR_NOT_SUPPORTED, a duplicate one CIM_ERR_INVALID_PARAMETER; an
//! omitted parameter takes the DSP0200 default.

use super::error::CimError;
use super::model::{Name, ObjectPath};
use super::xml::decode::{self, param_shape, Element, ParamShape};

/// Which properties and decorations an instance or class carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub include_qualifiers: bool,
    pub include_class_origin: bool,
    pub property_list: Option<Vec<String>>,
}

/// The association filters of Associators/References and their pull forms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssocFilter {
    pub assoc_class: Option<Name>,
    pub result_class: Option<Name>,
    pub role: Option<String>,
    pub result_role: Option<String>,
}

/// Options of the pull Open* operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOpts {
    pub max_object_count: u32,
    /// Seconds an idle enumeration context lives.
    pub operation_timeout: u32,
}

/// One intrinsic operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    GetClass {
        class: Name,
        local_only: bool,
        shape: Shape,
    },
    EnumerateClasses {
        class: Option<Name>,
        deep: bool,
        local_only: bool,
        shape: Shape,
    },
    EnumerateClassNames {
        class: Option<Name>,
        deep: bool,
    },
    GetQualifier {
        name: Name,
    },
    EnumerateQualifiers,
    GetInstance {
        path: ObjectPath,
        shape: Shape,
    },
    EnumerateInstances {
        class: Name,
        deep: bool,
        shape: Shape,
    },
    EnumerateInstanceNames {
        class: Name,
    },
    Associators {
        object: ObjectPath,
        filter: AssocFilter,
        shape: Shape,
    },
    AssociatorNames {
        object: ObjectPath,
        filter: AssocFilter,
    },
    References {
        object: ObjectPath,
        filter: AssocFilter,
        shape: Shape,
    },
    ReferenceNames {
        object: ObjectPath,
        filter: AssocFilter,
    },
    ExecQuery {
        language: String,
        query: String,
    },
    CreateInstance {
        instance: super::model::Instance,
    },
    ModifyInstance {
        path: ObjectPath,
        instance: super::model::Instance,
        property_list: Option<Vec<String>>,
    },
    DeleteInstance {
        path: ObjectPath,
    },
    OpenEnumerateInstances {
        class: Name,
        deep: bool,
        shape: Shape,
        open: OpenOpts,
    },
    OpenEnumerateInstancePaths {
        class: Name,
        open: OpenOpts,
    },
    OpenAssociatorInstances {
        object: ObjectPath,
        filter: AssocFilter,
        shape: Shape,
        open: OpenOpts,
    },
    OpenAssociatorInstancePaths {
        object: ObjectPath,
        filter: AssocFilter,
        open: OpenOpts,
    },
    OpenReferenceInstances {
        object: ObjectPath,
        filter: AssocFilter,
        shape: Shape,
        open: OpenOpts,
    },
    OpenReferenceInstancePaths {
        object: ObjectPath,
        filter: AssocFilter,
        open: OpenOpts,
    },
    OpenQueryInstances {
        language: String,
        query: String,
        open: OpenOpts,
    },
    PullInstances {
        context: String,
        max_object_count: u32,
    },
    PullInstancesWithPath {
        context: String,
        max_object_count: u32,
    },
    PullInstancePaths {
        context: String,
        max_object_count: u32,
    },
    CloseEnumeration {
        context: String,
    },
}

impl Op {
    /// The class a request is about, for logs.
    pub fn class_name(&self) -> Option<String> {
        Some(match self {
            Op::GetClass { class, .. }
            | Op::EnumerateInstances { class, .. }
            | Op::EnumerateInstanceNames { class }
            | Op::OpenEnumerateInstances { class, .. }
            | Op::OpenEnumerateInstancePaths { class, .. } => class.to_string(),
            Op::EnumerateClasses { class, .. } | Op::EnumerateClassNames { class, .. } => {
                class.as_ref()?.to_string()
            }
            Op::GetInstance { path, .. }
            | Op::DeleteInstance { path }
            | Op::ModifyInstance { path, .. } => path.class.to_string(),
            Op::Associators { object, .. }
            | Op::AssociatorNames { object, .. }
            | Op::References { object, .. }
            | Op::ReferenceNames { object, .. }
            | Op::OpenAssociatorInstances { object, .. }
            | Op::OpenAssociatorInstancePaths { object, .. }
            | Op::OpenReferenceInstances { object, .. }
            | Op::OpenReferenceInstancePaths { object, .. } => object.class.to_string(),
            Op::CreateInstance { instance } => instance.class.to_string(),
            _ => return None,
        })
    }
}

/// The IPARAMVALUEs of one call, consumed by name.
struct Params {
    method: String,
    items: Vec<(String, Element)>,
}

fn bad(m: impl Into<String>) -> CimError {
    CimError::invalid_parameter(m)
}

/// A value or element that is not valid CIM-XML (HTTP 400).
fn not_valid(m: impl Into<String>) -> CimError {
    CimError::request_not_valid(m)
}

impl Params {
    fn new(method: &str, items: Vec<(String, Element)>) -> Result<Params, CimError> {
        for (i, (n, _)) in items.iter().enumerate() {
            if items[..i].iter().any(|(m, _)| m.eq_ignore_ascii_case(n)) {
                return Err(bad(format!("{method}: parameter {n} is given twice")));
            }
        }
        Ok(Params {
            method: method.to_string(),
            items,
        })
    }

    fn take(&mut self, name: &str) -> Option<Element> {
        let i = self
            .items
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.items.remove(i).1)
    }

    /// Every parameter must have been consumed.
    fn finish(self) -> Result<(), CimError> {
        match self.items.first() {
            None => Ok(()),
            Some((n, _)) => Err(CimError::not_supported(format!(
                "{}: parameter {n} is not supported",
                self.method
            ))),
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> Result<bool, CimError> {
        match self.string(name)? {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(not_valid(format!(
                    "{}: {name} must be TRUE or FALSE, not `{other}`",
                    self.method
                ))),
            },
        }
    }

    /// What a parameter holds other than the shape the operation wants.
    fn wrong_shape(&self, name: &str, want: &str, got: ParamShape<'_>) -> CimError {
        let got = match got {
            ParamShape::Other(n) => n,
            ParamShape::Text(_) => "a VALUE",
            ParamShape::ClassName(_) => "a CLASSNAME",
            ParamShape::TextArray(_) => "a VALUE.ARRAY",
            ParamShape::NamedInstance(_) => "a VALUE.NAMEDINSTANCE",
            ParamShape::Empty => "empty",
        };
        bad(format!("{}: {name} must be {want}, not {got}", self.method))
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, CimError> {
        match self.take(name) {
            None => Ok(None),
            Some(e) => match param_shape(&e) {
                ParamShape::Empty => Ok(None),
                ParamShape::Text(t) => Ok(Some(t.to_string())),
                other => Err(self.wrong_shape(name, "a VALUE", other)),
            },
        }
    }

    /// EnumerationContext, which the pull operations require.
    fn context(&mut self) -> Result<String, CimError> {
        self.string("EnumerationContext")?
            .ok_or_else(|| bad("EnumerationContext is required"))
    }

    /// MaxObjectCount, which the Pull operations require.
    fn max_object_count(&mut self) -> Result<u32, CimError> {
        self.u32("MaxObjectCount")?
            .ok_or_else(|| bad("MaxObjectCount is required"))
    }

    fn u32(&mut self, name: &str) -> Result<Option<u32>, CimError> {
        match self.string(name)? {
            None => Ok(None),
            Some(s) => {
                s.trim().parse().map(Some).map_err(|_| {
                    not_valid(format!("{}: {name} `{s}` is not a uint32", self.method))
                })
            }
        }
    }

    fn class_name(&mut self, name: &str) -> Result<Option<Name>, CimError> {
        match self.take(name) {
            None => Ok(None),
            Some(e) => match param_shape(&e) {
                ParamShape::Empty => Ok(None),
                ParamShape::ClassName(Some(c)) => Ok(Some(Name::new(c))),
                ParamShape::ClassName(None) => Err(not_valid("CLASSNAME without NAME")),
                other => Err(self.wrong_shape(name, "a CLASSNAME", other)),
            },
        }
    }

    fn need_class(&mut self, name: &str) -> Result<Name, CimError> {
        self.class_name(name)?
            .ok_or_else(|| bad(format!("{}: {name} is required", self.method)))
    }

    fn instance_name(&mut self, name: &str) -> Result<ObjectPath, CimError> {
        let e = self
            .take(name)
            .ok_or_else(|| bad(format!("{}: {name} is required", self.method)))?;
        let inner = e
            .first()
            .ok_or_else(|| bad(format!("{}: {name} is empty", self.method)))?;
        decode::instance_name(inner).map_err(|x| not_valid(format!("{}: {name}: {x}", self.method)))
    }

    /// ObjectName/InstanceName of association operations: an instance or a class.
    fn object(&mut self, names: &[&str]) -> Result<ObjectPath, CimError> {
        let e = names
            .iter()
            .find_map(|n| self.take(n))
            .ok_or_else(|| bad(format!("{}: {} is required", self.method, names[0])))?;
        let inner = e
            .first()
            .ok_or_else(|| bad(format!("{}: {} is empty", self.method, names[0])))?;
        decode::object_path(inner).map_err(|x| not_valid(format!("{}: {x}", self.method)))
    }

    fn property_list(&mut self) -> Result<Option<Vec<String>>, CimError> {
        match self.take("PropertyList") {
            None => Ok(None),
            Some(e) => match param_shape(&e) {
                ParamShape::Empty => Ok(None),
                ParamShape::TextArray(names) => {
                    Ok(Some(names.into_iter().map(str::to_string).collect()))
                }
                other => Err(self.wrong_shape("PropertyList", "a VALUE.ARRAY", other)),
            },
        }
    }

    fn shape(&mut self, qualifiers_default: bool) -> Result<Shape, CimError> {
        Ok(Shape {
            include_qualifiers: self.boolean("IncludeQualifiers", qualifiers_default)?,
            include_class_origin: self.boolean("IncludeClassOrigin", false)?,
            property_list: self.property_list()?,
        })
    }

    fn filter(&mut self, with_assoc: bool) -> Result<AssocFilter, CimError> {
        Ok(AssocFilter {
            assoc_class: if with_assoc {
                self.class_name("AssocClass")?
            } else {
                None
            },
            result_class: self.class_name("ResultClass")?,
            role: self.string("Role")?.filter(|s| !s.is_empty()),
            result_role: if with_assoc {
                self.string("ResultRole")?.filter(|s| !s.is_empty())
            } else {
                None
            },
        })
    }

    /// FilterQuery, ContinueOnError, OperationTimeout, MaxObjectCount.
    fn open(&mut self) -> Result<OpenOpts, CimError> {
        let lang = self.string("FilterQueryLanguage")?;
        let query = self.string("FilterQuery")?;
        if lang.is_some() || query.is_some() {
            return Err(CimError::filtered_enumeration_not_supported(format!(
                "{}: FilterQuery is not supported; use ExecQuery or OpenQueryInstances with WQL",
                self.method
            )));
        }
        self.open_rest()
    }

    /// ContinueOnError, OperationTimeout, MaxObjectCount.
    fn open_rest(&mut self) -> Result<OpenOpts, CimError> {
        if self.boolean("ContinueOnError", false)? {
            return Err(CimError::continuation_on_error_not_supported(format!(
                "{}: ContinueOnError is not supported",
                self.method
            )));
        }
        let timeout = match self.u32("OperationTimeout")? {
            None => 40,
            Some(0) => {
                return Err(CimError::invalid_operation_timeout(
                    "OperationTimeout 0 (never) is not accepted; use 1 to 600 seconds",
                ))
            }
            Some(t) if t > 600 => {
                return Err(CimError::invalid_operation_timeout(format!(
                    "OperationTimeout {t} is above the 600 s limit"
                )))
            }
            Some(t) => t,
        };
        Ok(OpenOpts {
            max_object_count: self.u32("MaxObjectCount")?.unwrap_or(0),
            operation_timeout: timeout,
        })
    }
}

/// Parses an intrinsic call into an `Op`.
pub fn parse(method: &str, params: Vec<(String, Element)>) -> Result<Op, CimError> {
    let mut p = Params::new(method, params)?;
    let m = method.to_ascii_lowercase();
    let op = match m.as_str() {
        "getclass" => Op::GetClass {
            class: p.need_class("ClassName")?,
            local_only: p.boolean("LocalOnly", true)?,
            shape: p.shape(true)?,
        },
        "enumerateclasses" => Op::EnumerateClasses {
            class: p.class_name("ClassName")?,
            deep: p.boolean("DeepInheritance", false)?,
            local_only: p.boolean("LocalOnly", true)?,
            shape: Shape {
                include_qualifiers: p.boolean("IncludeQualifiers", true)?,
                include_class_origin: p.boolean("IncludeClassOrigin", false)?,
                property_list: None,
            },
        },
        "enumerateclassnames" => Op::EnumerateClassNames {
            class: p.class_name("ClassName")?,
            deep: p.boolean("DeepInheritance", false)?,
        },
        "getqualifier" => Op::GetQualifier {
            name: Name::new(
                &p.string("QualifierName")?
                    .ok_or_else(|| bad("GetQualifier: QualifierName is required"))?,
            ),
        },
        "enumeratequalifiers" => Op::EnumerateQualifiers,
        "getinstance" => {
            let path = p.instance_name("InstanceName")?;
            // LocalOnly is deprecated; it is accepted and treated as false.
            p.boolean("LocalOnly", false)?;
            Op::GetInstance {
                path,
                shape: p.shape(false)?,
            }
        }
        "enumerateinstances" => {
            let class = p.need_class("ClassName")?;
            p.boolean("LocalOnly", false)?;
            Op::EnumerateInstances {
                class,
                deep: p.boolean("DeepInheritance", true)?,
                shape: p.shape(false)?,
            }
        }
        "enumerateinstancenames" => Op::EnumerateInstanceNames {
            class: p.need_class("ClassName")?,
        },
        "associators" => Op::Associators {
            object: p.object(&["ObjectName"])?,
            filter: p.filter(true)?,
            shape: p.shape(false)?,
        },
        "associatornames" => Op::AssociatorNames {
            object: p.object(&["ObjectName"])?,
            filter: p.filter(true)?,
        },
        "references" => Op::References {
            object: p.object(&["ObjectName"])?,
            filter: p.filter(false)?,
            shape: p.shape(false)?,
        },
        "referencenames" => Op::ReferenceNames {
            object: p.object(&["ObjectName"])?,
            filter: p.filter(false)?,
        },
        "execquery" => Op::ExecQuery {
            language: p
                .string("QueryLanguage")?
                .ok_or_else(|| bad("ExecQuery: QueryLanguage is required"))?,
            query: p
                .string("Query")?
                .ok_or_else(|| bad("ExecQuery: Query is required"))?,
        },
        "createinstance" => {
            let e = p
                .take("NewInstance")
                .ok_or_else(|| bad("CreateInstance: NewInstance is required"))?;
            let inst = decode::instance(
                e.first()
                    .ok_or_else(|| bad("CreateInstance: NewInstance is empty"))?,
            )
            .map_err(|x| not_valid(x.to_string()))?;
            Op::CreateInstance { instance: inst }
        }
        "modifyinstance" => {
            let e = p
                .take("ModifiedInstance")
                .ok_or_else(|| bad("ModifyInstance: ModifiedInstance is required"))?;
            let ParamShape::NamedInstance(ni) = param_shape(&e) else {
                return Err(bad(
                    "ModifyInstance: ModifiedInstance must be a VALUE.NAMEDINSTANCE",
                ));
            };
            let (path, instance) =
                decode::named_instance(ni).map_err(|x| not_valid(x.to_string()))?;
            p.boolean("IncludeQualifiers", true)?;
            Op::ModifyInstance {
                path,
                instance,
                property_list: p.property_list()?,
            }
        }
        "deleteinstance" => Op::DeleteInstance {
            path: p.instance_name("InstanceName")?,
        },
        "openenumerateinstances" => Op::OpenEnumerateInstances {
            class: p.need_class("ClassName")?,
            deep: p.boolean("DeepInheritance", true)?,
            shape: Shape {
                include_qualifiers: false,
                include_class_origin: p.boolean("IncludeClassOrigin", false)?,
                property_list: p.property_list()?,
            },
            open: p.open()?,
        },
        "openenumerateinstancepaths" => Op::OpenEnumerateInstancePaths {
            class: p.need_class("ClassName")?,
            open: p.open()?,
        },
        "openassociatorinstances" => Op::OpenAssociatorInstances {
            object: p.object(&["InstanceName", "ObjectName"])?,
            filter: p.filter(true)?,
            shape: Shape {
                include_qualifiers: false,
                include_class_origin: p.boolean("IncludeClassOrigin", false)?,
                property_list: p.property_list()?,
            },
            open: p.open()?,
        },
        "openassociatorinstancepaths" => Op::OpenAssociatorInstancePaths {
            object: p.object(&["InstanceName", "ObjectName"])?,
            filter: p.filter(true)?,
            open: p.open()?,
        },
        "openreferenceinstances" => Op::OpenReferenceInstances {
            object: p.object(&["InstanceName", "ObjectName"])?,
            filter: p.filter(false)?,
            shape: Shape {
                include_qualifiers: false,
                include_class_origin: p.boolean("IncludeClassOrigin", false)?,
                property_list: p.property_list()?,
            },
            open: p.open()?,
        },
        "openreferenceinstancepaths" => Op::OpenReferenceInstancePaths {
            object: p.object(&["InstanceName", "ObjectName"])?,
            filter: p.filter(false)?,
            open: p.open()?,
        },
        "openqueryinstances" => {
            let language = p
                .string("FilterQueryLanguage")?
                .ok_or_else(|| bad("OpenQueryInstances: FilterQueryLanguage is required"))?;
            let query = p
                .string("FilterQuery")?
                .ok_or_else(|| bad("OpenQueryInstances: FilterQuery is required"))?;
            if p.boolean("ReturnQueryResultClass", false)? {
                return Err(CimError::not_supported(
                    "OpenQueryInstances: ReturnQueryResultClass is not supported",
                ));
            }
            Op::OpenQueryInstances {
                language,
                query,
                open: p.open_rest()?,
            }
        }
        "pullinstances" => Op::PullInstances {
            context: p.context()?,
            max_object_count: p.max_object_count()?,
        },
        "pullinstanceswithpath" => Op::PullInstancesWithPath {
            context: p.context()?,
            max_object_count: p.max_object_count()?,
        },
        "pullinstancepaths" => Op::PullInstancePaths {
            context: p.context()?,
            max_object_count: p.max_object_count()?,
        },
        "closeenumeration" => Op::CloseEnumeration {
            context: p.context()?,
        },
        _ => {
            return Err(CimError::not_supported(format!(
                "intrinsic method {method} is not supported by this server"
            )))
        }
    };
    p.finish()?;
    Ok(op)
}
