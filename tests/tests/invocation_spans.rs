//! Every invocation runs in a `tracing` span naming the function type, id,
//! handler, shard and outcome.

use std::sync::{Arc, Mutex};

use statefn::prelude::*;
use statefn_examples::bank::Account;
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context as LayerContext, prelude::*};

/// A span's fields as (name, value).
type SpanFields = Vec<(String, String)>;

/// Collects the fields of every `invoke` span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanFields>>>);

struct Fields<'a>(&'a mut SpanFields);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        ));
    }
}

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().name() != "invoke" {
            return;
        }
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Fields(fields));
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(fields) = span.extensions_mut().remove::<SpanFields>()
        {
            self.0.lock().expect("lock").push(fields);
        }
    }
}

#[test]
fn each_invocation_has_a_span_with_its_function_id_handler_shard_and_outcome() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(
        spans
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
    );
    // Global, because handlers run on the runtime's worker threads.
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        let runtime = Runtime::builder()
            .in_memory()
            .register::<Account>()
            .open()
            .await?;
        let a = runtime.handle::<Account>("span-a");
        a.deposit(5).await?.expect("a positive amount");
        assert!(a.withdraw(50).await?.is_err());
        runtime.shutdown().await
    })
    .expect("calls");
    let spans = spans.0.lock().expect("lock").clone();
    let find = |handler: &str| {
        spans
            .iter()
            .find(|f| f.iter().any(|(k, v)| k == "handler" && v == handler))
            .unwrap_or_else(|| panic!("no span for {handler}: {spans:?}"))
            .clone()
    };
    let deposit = find("deposit");
    for (key, value) in [
        ("function", "Account"),
        ("id", "span-a"),
        ("outcome", "applied"),
    ] {
        assert!(
            deposit.contains(&(key.to_owned(), value.to_owned())),
            "{deposit:?}"
        );
    }
    assert!(deposit.iter().any(|(k, _)| k == "shard"), "{deposit:?}");
    let withdraw = find("withdraw");
    assert!(
        withdraw.contains(&("outcome".to_owned(), "rejected".to_owned())),
        "{withdraw:?}"
    );
}
