//! Requests of the old clients made acceptable to juniper where the GraphQL specification (and
//! the old server's graphql-core) accepts them and juniper does not.
//!
//! juniper runs its validation rules inside `ValidatedOperation::new` with no way to replace a
//! rule, so the request is normalised before it gets there, in two ways that change nothing
//! the specification would answer differently:
//!
//! - **All Variable Usages Are Allowed** (spec §5.8.5): a nullable variable may be used where a
//!   non-null argument has a default value (`query($limit: Int) { dramas(limit: $limit) }`
//!   against `dramas(limit: Int! = 100)`). juniper only knows the older rule, where a variable
//!   *with its own default* counts as non-null. So such a variable gets the argument's default
//!   as its own (`$limit: Int = 100`): an absent variable then gives the argument exactly the
//!   default the specification gives it, a value is passed as it is, and an explicit `null` is
//!   still refused at the argument, as the specification requires. This is done only when
//!   every use of the variable is such a position with the same default; anything else is left
//!   to juniper's own error.
//! - **Input coercion of `Int`**: graphql-core accepts a JSON number with an integral value
//!   (`10.0`, which is how some JSON encoders write a double) for an `Int` variable; juniper
//!   only an integer. Such values become integers when they fit in 32 bits.

use std::collections::{HashMap, HashSet};

use juniper::http::GraphQLRequest;
use juniper::meta::Argument;
use juniper::{DefaultScalarValue, Definition, InputValue, OperationType, SchemaType, Selection};

type Schema = SchemaType<DefaultScalarValue>;

/// Rewrites `request` in place where the old clients' documents need it (see the module
/// documentation). A document that does not parse is left alone for juniper to report.
///
/// # Errors
/// The message of a request error the specification requires and juniper would not give:
/// an explicit `null` for a variable that `@skip(if:)`/`@include(if:)` reads (juniper 0.18
/// panics on it instead).
pub(crate) fn normalise(schema: &Schema, request: &mut GraphQLRequest) -> Result<(), String> {
    let Ok(document) = juniper::parser::parse_document_source(&request.query, schema) else {
        return Ok(());
    };
    let fragments = fragments(&document);
    let mut insertions: Vec<(usize, String)> = Vec::new();
    let mut int_variables: HashSet<String> = HashSet::new();
    for definition in &document {
        let Definition::Operation(op) = definition else {
            continue;
        };
        let Some(defs) = &op.item.variables_definition else {
            continue;
        };
        let root = match op.item.operation_type {
            OperationType::Query => Some(schema.concrete_query_type()),
            OperationType::Mutation => schema.concrete_mutation_type(),
            OperationType::Subscription => schema.concrete_subscription_type(),
        };
        let Some(root) = root.and_then(|t| t.name()) else {
            continue;
        };
        let mut usages = Usages::default();
        usages.walk(schema, &fragments, root, &op.item.selection_set);
        for name in &usages.in_conditions {
            let null = match &request.variables {
                Some(InputValue::Object(values)) => values
                    .iter()
                    .any(|(k, v)| k.item == *name && v.item.is_null()),
                _ => false,
            };
            if null {
                return Err(format!(
                    "Variable \"${name}\" is null where @skip or @include needs a Boolean"
                ));
            }
        }
        for (name, def) in defs.item.iter() {
            let var_type = &def.var_type.item;
            if var_type.innermost_name() == "Int" && !var_type.is_list() {
                int_variables.insert(name.item.to_owned());
            }
            if def.default_value.is_some() || var_type.is_non_null() {
                continue;
            }
            let Some(default) = usages.shared_default(schema, name.item, var_type) else {
                continue;
            };
            insertions.push((def.var_type.span.end.index(), format!(" = {default}")));
        }
    }
    if !insertions.is_empty() {
        request.query = insert_at_chars(&request.query, insertions);
    }
    if let Some(InputValue::Object(values)) = &mut request.variables {
        for (name, value) in values.iter_mut() {
            if int_variables.contains(&name.item) {
                integral_float_to_int(&mut value.item);
            }
        }
    }
    Ok(())
}

/// `10.0` → `10` (when it fits an `Int`); everything else stays as it is. The same rule as
/// the REST bodies' integer fields ([`drama_domain::lax`]).
fn integral_float_to_int(value: &mut InputValue<DefaultScalarValue>) {
    if let InputValue::Scalar(DefaultScalarValue::Float(f)) = value
        && let Some(int) = drama_domain::lax::float_to_i64(*f)
        && let Ok(int) = i32::try_from(int)
    {
        *value = InputValue::Scalar(DefaultScalarValue::Int(int));
    }
}

/// Every fragment of the document by name: its type condition and selections.
pub(super) type Fragments<'d, 'a> =
    HashMap<&'a str, (&'a str, &'d [Selection<'a, DefaultScalarValue>])>;

/// The fragments of a parsed document.
pub(super) fn fragments<'d, 'a>(
    document: &'d [Definition<'a, DefaultScalarValue>],
) -> Fragments<'d, 'a> {
    document
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((
                f.item.name.item,
                (f.item.type_condition.item, f.item.selection_set.as_slice()),
            )),
            Definition::Operation(_) => None,
        })
        .collect()
}

/// Records the variables used in the arguments of directives (positions not looked into).
macro_rules! directive_uses {
    ($self:ident, $directives:expr) => {
        for directive in $directives.iter().flatten() {
            for (name, value) in directive.item.arguments.iter().flat_map(|a| a.item.iter()) {
                if name.item == "if"
                    && let InputValue::Variable(var) = &value.item
                {
                    $self.in_conditions.insert(var.clone());
                }
                $self.value(&value.item, None);
            }
        }
    };
}

/// Where each variable of one operation is used: the argument it is passed to, or `None` for a
/// position this normalisation does not look into (inside a list or an input object, a
/// directive, an unknown field).
#[derive(Default)]
struct Usages<'s> {
    by_variable: HashMap<String, Vec<Option<&'s Argument<DefaultScalarValue>>>>,
    visited_fragments: HashSet<String>,
    /// Variables read by the `if` of `@skip`/`@include`.
    in_conditions: HashSet<String>,
}

impl<'s> Usages<'s> {
    fn walk(
        &mut self,
        schema: &'s Schema,
        fragments: &Fragments<'_, '_>,
        parent: &str,
        selections: &[Selection<'_, DefaultScalarValue>],
    ) {
        for selection in selections {
            match selection {
                Selection::Field(field) => {
                    let field = &field.item;
                    let meta = schema
                        .concrete_type_by_name(parent)
                        .and_then(|t| t.field_by_name(field.name.item));
                    for (arg_name, value) in field.arguments.iter().flat_map(|a| a.item.iter()) {
                        let argument = meta
                            .and_then(|m| m.arguments.as_ref())
                            .and_then(|args| args.iter().find(|a| a.name == arg_name.item));
                        self.value(&value.item, argument);
                    }
                    directive_uses!(self, field.directives);
                    if let (Some(meta), Some(children)) = (meta, &field.selection_set) {
                        let child = meta.field_type.innermost_name().to_owned();
                        self.walk(schema, fragments, &child, children);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    directive_uses!(self, spread.item.directives);
                    let name = spread.item.name.item;
                    if !self.visited_fragments.insert(name.to_owned()) {
                        continue;
                    }
                    // A fragment's fields belong to its type condition, wherever it is spread.
                    if let Some((condition, selections)) = fragments.get(name) {
                        self.walk(schema, fragments, condition, selections);
                    }
                }
                Selection::InlineFragment(inline) => {
                    directive_uses!(self, inline.item.directives);
                    let parent = inline
                        .item
                        .type_condition
                        .as_ref()
                        .map_or(parent, |c| c.item);
                    self.walk(schema, fragments, parent, &inline.item.selection_set);
                }
            }
        }
    }

    fn value(
        &mut self,
        value: &InputValue<DefaultScalarValue>,
        argument: Option<&'s Argument<DefaultScalarValue>>,
    ) {
        match value {
            InputValue::Variable(name) => self
                .by_variable
                .entry(name.clone())
                .or_default()
                .push(argument),
            InputValue::List(items) => {
                for item in items {
                    self.value(&item.item, None);
                }
            }
            InputValue::Object(fields) => {
                for (_, item) in fields {
                    self.value(&item.item, None);
                }
            }
            InputValue::Null | InputValue::Scalar(_) | InputValue::Enum(_) => {}
        }
    }

    /// The default of the argument(s) a nullable variable without a default is passed to, when
    /// every use is a non-null argument with that same default that would accept the variable
    /// if it were non-null: the case the specification allows and juniper refuses.
    fn shared_default(
        &self,
        schema: &Schema,
        variable: &str,
        var_type: &juniper::Type<&str>,
    ) -> Option<String> {
        let uses = self.by_variable.get(variable)?;
        let as_non_null = var_type.clone().wrap_non_null();
        let mut shared: Option<String> = None;
        for argument in uses {
            let argument = (*argument)?;
            let default = argument.default_value.as_ref()?;
            if !argument.arg_type.is_non_null()
                || !schema.is_subtype(&as_non_null, &argument.arg_type)
            {
                return None;
            }
            let literal = literal(default)?;
            match &shared {
                Some(seen) if *seen != literal => return None,
                _ => shared = Some(literal),
            }
        }
        shared
    }
}

/// A default value as GraphQL source text; `None` for strings that would need escaping
/// (juniper prints strings without escapes), which no default of the schema has.
fn literal(value: &InputValue<DefaultScalarValue>) -> Option<String> {
    match value {
        InputValue::Scalar(DefaultScalarValue::String(s))
            if s.contains(['"', '\\']) || s.chars().any(char::is_control) =>
        {
            None
        }
        InputValue::Variable(_) => None,
        other => Some(other.to_string()),
    }
}

/// Inserts each text at its character index (juniper's source positions count characters).
fn insert_at_chars(source: &str, mut insertions: Vec<(usize, String)>) -> String {
    insertions.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut out = source.to_owned();
    for (at, text) in insertions {
        let byte = source
            .char_indices()
            .nth(at)
            .map_or(source.len(), |(b, _)| b);
        out.insert_str(byte, &text);
    }
    out
}
