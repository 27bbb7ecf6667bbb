//! JSON Schemas of handler arguments and replies, the raw material of the
//! ingress's OpenAPI document (`GET /v1/openapi.json`).
//!
//! `#[stateful_function]` generates, per handler, code that asks for the
//! schema of each argument type and of the reply (and error) type. A type
//! that implements [`schemars::JsonSchema`] gets its real schema; any other
//! type gets an "any JSON value" schema whose description names the type and
//! says to derive `JsonSchema`. The choice is made at compile time by autoref
//! specialisation ([`ViaJsonSchema`] is found before [`ViaAnyValue`]), so
//! deriving `JsonSchema` is an improvement of the document, never a
//! requirement for a function to compile.
//!
//! The macro's code is the same with or without the `http` feature; only
//! the ingress (with `http`) builds a document from it.
#![cfg_attr(
    not(feature = "http"),
    allow(
        dead_code,
        reason = "the document is built by the ingress (feature `http`)"
    )
)]

use std::marker::PhantomData;

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

/// Where shared schemas live in the document: `#/components/schemas/Name`.
pub(crate) const COMPONENTS: &str = "#/components/schemas/";

/// The schemas of every handler of a document, collected in two generators:
/// arguments as JSON is *read* into them (serde's deserialize side: a field
/// with `#[serde(default)]` is optional), replies as they are *written*
/// (the serialize side). Both write OpenAPI 3.0 schemas.
#[doc(hidden)]
#[allow(missing_debug_implementations, reason = "generators have no Debug")]
pub struct Schemas {
    arguments: SchemaGenerator,
    replies: SchemaGenerator,
}

impl Schemas {
    pub(crate) fn new() -> Self {
        Schemas {
            arguments: SchemaSettings::openapi3()
                .for_deserialize()
                .into_generator(),
            replies: SchemaSettings::openapi3().for_serialize().into_generator(),
        }
    }

    fn argument<T: JsonSchema + ?Sized>(&mut self) -> Value {
        transformed(&mut self.arguments, |g| g.subschema_for::<T>())
    }

    fn reply<T: JsonSchema + ?Sized>(&mut self) -> Value {
        transformed(&mut self.replies, |g| g.subschema_for::<T>())
    }

    /// The shared schemas, by name, for `components.schemas`. A type whose
    /// argument and reply schemas differ under one name (serde attributes
    /// that act on one side only) keeps its name for the argument side and
    /// gets `NameReply` for the reply side; `replies` holds every reply
    /// schema handed out, whose references are renamed to match.
    pub(crate) fn into_components(mut self, replies: &mut [&mut Value]) -> Map<String, Value> {
        let mut components = self.arguments.take_definitions(true);
        let reply_definitions = self.replies.take_definitions(true);
        let mut renames = Vec::new();
        for (name, schema) in &reply_definitions {
            match components.get(name) {
                None => {}
                Some(same) if same == schema => {}
                Some(_) => {
                    let mut renamed = format!("{name}Reply");
                    let mut n = 2;
                    while components.contains_key(&renamed)
                        || reply_definitions.contains_key(&renamed)
                    {
                        renamed = format!("{name}Reply{n}");
                        n += 1;
                    }
                    renames.push((
                        format!("{COMPONENTS}{name}"),
                        format!("{COMPONENTS}{renamed}"),
                    ));
                }
            }
        }
        let rename = |value: &mut Value| {
            for (from, to) in &renames {
                rename_refs(value, from, to);
            }
        };
        for (name, mut schema) in reply_definitions {
            rename(&mut schema);
            let key = renames
                .iter()
                .find(|(from, _)| from.strip_prefix(COMPONENTS) == Some(name.as_str()))
                .and_then(|(_, to)| to.strip_prefix(COMPONENTS))
                .map_or(name, str::to_owned);
            components.insert(key, schema);
        }
        for reply in replies {
            rename(reply);
        }
        components
    }
}

/// `generate`'s schema with the generator's transforms applied (which
/// `subschema_for` leaves to the caller): the OpenAPI 3.0 dialect.
fn transformed(
    generator: &mut SchemaGenerator,
    generate: impl FnOnce(&mut SchemaGenerator) -> schemars::Schema,
) -> Value {
    let mut schema = generate(generator);
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    schema.to_value()
}

fn rename_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                if key == "$ref" && inner.as_str() == Some(from) {
                    *inner = Value::String(to.to_owned());
                } else {
                    rename_refs(inner, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, from, to)),
        _ => {}
    }
}

/// The schema of a type that does not implement `JsonSchema`: any value,
/// with a description that says how to do better.
fn any_value(type_text: &str) -> Value {
    json!({
        "description": format!(
            "`{type_text}`: any JSON value (the type does not implement \
             `schemars::JsonSchema`; derive it to describe the value here)"
        ),
    })
}

/// One handler as the OpenAPI document describes it. Made by the code
/// `#[stateful_function]` generates.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct HandlerSchema {
    /// The handler's doc comment (may be empty).
    pub description: &'static str,
    /// The arguments, in order.
    pub args: Vec<ArgSchema>,
    /// The reply: the return value, or the `T` of `Result<T, E>`.
    pub reply: Value,
    /// The `E` of a fallible handler's `Result<T, E>`.
    pub error: Option<Value>,
}

/// One argument of a [`HandlerSchema`].
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ArgSchema {
    /// The field name in the JSON body.
    pub name: &'static str,
    /// Whether the body must have it: every argument but an `Option`, which
    /// reads as `None` when absent.
    pub required: bool,
    /// Its schema.
    pub schema: Value,
}

/// Stands for the type `T` (written `text` in the source), for the
/// autoref-specialised [`ViaJsonSchema`] / [`ViaAnyValue`] calls.
#[doc(hidden)]
#[allow(missing_debug_implementations, reason = "a compile-time probe")]
pub struct SchemaOf<T: ?Sized>(&'static str, PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> SchemaOf<T> {
    /// `text`: the type as written, for the fallback's description.
    pub const fn new(text: &'static str) -> Self {
        SchemaOf(text, PhantomData)
    }
}

/// Chosen for `(&SchemaOf::<T>::new(..)).argument(..)` when `T:
/// JsonSchema`: the method takes `&SchemaOf<T>`, the receiver as written.
#[doc(hidden)]
pub trait ViaJsonSchema {
    /// The schema of the type as an argument.
    fn argument(&self, schemas: &mut Schemas) -> Value;
    /// The schema of the type as a reply.
    fn reply(&self, schemas: &mut Schemas) -> Value;
}

impl<T: JsonSchema + ?Sized> ViaJsonSchema for SchemaOf<T> {
    fn argument(&self, schemas: &mut Schemas) -> Value {
        schemas.argument::<T>()
    }
    fn reply(&self, schemas: &mut Schemas) -> Value {
        schemas.reply::<T>()
    }
}

/// The fallback: its method takes `&&SchemaOf<T>`, found by method lookup
/// only after [`ViaJsonSchema`]'s did not apply.
#[doc(hidden)]
pub trait ViaAnyValue {
    /// "Any JSON value".
    fn argument(&self, schemas: &mut Schemas) -> Value;
    /// "Any JSON value".
    fn reply(&self, schemas: &mut Schemas) -> Value;
}

impl<T: ?Sized> ViaAnyValue for &SchemaOf<T> {
    fn argument(&self, _: &mut Schemas) -> Value {
        any_value(self.0)
    }
    fn reply(&self, _: &mut Schemas) -> Value {
        any_value(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Opaque;

    #[test]
    #[allow(
        clippy::needless_borrow,
        reason = "the borrow is what lets the fallback apply (see the generated code)"
    )]
    fn a_type_with_json_schema_gets_it_and_any_other_type_gets_any_value() {
        #[allow(unused_imports, reason = "which trait applies depends on the type")]
        use super::{ViaAnyValue as _, ViaJsonSchema as _};
        let mut schemas = Schemas::new();
        let known = (&SchemaOf::<u32>::new("u32")).argument(&mut schemas);
        assert_eq!(known["type"], "integer", "{known}");
        let opaque = (&SchemaOf::<Opaque>::new("Opaque")).reply(&mut schemas);
        let text = opaque["description"].as_str().unwrap_or_default();
        assert!(
            text.contains("`Opaque`") && text.contains("JsonSchema"),
            "{opaque}"
        );
        assert_eq!(opaque.as_object().map(|o| o.len()), Some(1), "{opaque}");
    }

    #[test]
    fn reply_references_are_renamed_when_the_two_sides_differ() {
        let mut value = json!({"items": [{"$ref": "#/components/schemas/A"}], "b": {"$ref": "#/components/schemas/B"}});
        rename_refs(
            &mut value,
            "#/components/schemas/A",
            "#/components/schemas/AReply",
        );
        assert_eq!(value["items"][0]["$ref"], "#/components/schemas/AReply");
        assert_eq!(value["b"]["$ref"], "#/components/schemas/B");
    }
}
