//! Every invocation runs in a `tracing` span naming the function type, id,
//! handler, shard and outcome, and a traced invocation's span continues its
//! W3C trace into the spans of the messages it sends.

use std::sync::{Arc, Mutex};

use statefn::{TraceContext, prelude::*};
use statefn_examples::bank::Account;
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context as LayerContext, prelude::*};

/// The parent of the traced transfer (the W3C specification's example).
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

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
        // A traced transfer: its span continues the trace, and the deposit
        // it sends runs in a span whose parent is the transfer's.
        let parent = TraceContext::parse(TRACEPARENT).expect("a valid traceparent");
        a.transfer("span-b".into(), 2)
            .trace_context(parent)
            .await?
            .expect("enough money");
        let b = runtime.handle::<Account>("span-b");
        while b.balance().await? != 2 {
            tokio::task::yield_now().await;
        }
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
    let field = |span: &SpanFields, key: &str| {
        span.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {span:?}"))
    };
    let transfer = find("transfer");
    assert_eq!(
        field(&transfer, "trace_id"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(field(&transfer, "parent_span_id"), "00f067aa0ba902b7");
    let received = spans
        .iter()
        .find(|f| {
            f.contains(&("id".to_owned(), "span-b".to_owned()))
                && f.iter().any(|(k, v)| k == "handler" && v == "deposit")
        })
        .unwrap_or_else(|| panic!("no deposit span of span-b: {spans:?}"))
        .clone();
    assert_eq!(field(&received, "trace_id"), field(&transfer, "trace_id"));
    assert_eq!(
        field(&received, "parent_span_id"),
        field(&transfer, "span_id")
    );
    assert_ne!(field(&received, "span_id"), field(&transfer, "span_id"));
    assert_eq!(field(&received, "caller"), "Account/span-a");
    assert!(
        field(&received, "invocation_id").starts_with("m-"),
        "{received:?}"
    );
    // Untraced invocations record no trace.
    assert!(!deposit.iter().any(|(k, _)| k == "trace_id"), "{deposit:?}");
    let withdraw = find("withdraw");
    assert!(
        withdraw.contains(&("outcome".to_owned(), "rejected".to_owned())),
        "{withdraw:?}"
    );
}
