//! Counters for `/metrics`, in Prometheus text format. A leaf module: the HTTP layer counts
//! responses, the records service counts what it did, and neither imports the other for it.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub responses_2xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub documents_taken_in: AtomicU64,
    pub copies_served: AtomicU64,
    pub integrity_errors: AtomicU64,
    /// Audit entries that could not be written (the request then failed closed).
    pub audit_failures: AtomicU64,
    /// Transactions of the group-committed log writer (entries per batch = entries / batches).
    pub audit_batches: AtomicU64,
    /// Times the database's log was found behind, or different from, what this process
    /// committed (an alarm: see `audit::checkpoints::Publisher`).
    pub audit_rollbacks: AtomicU64,
    /// Scans a clerk asked the vault to read a CCCD's QR from (`POST /v1/scans/read-card`).
    pub card_reads: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# TYPE hoso_http_responses_total counter\n\
             hoso_http_responses_total{{class=\"2xx\"}} {}\n\
             hoso_http_responses_total{{class=\"4xx\"}} {}\n\
             hoso_http_responses_total{{class=\"5xx\"}} {}\n\
             # TYPE hoso_documents_taken_in_total counter\n\
             hoso_documents_taken_in_total {}\n\
             # TYPE hoso_copies_served_total counter\n\
             hoso_copies_served_total {}\n\
             # TYPE hoso_integrity_errors_total counter\n\
             hoso_integrity_errors_total {}\n\
             # TYPE hoso_audit_failures_total counter\n\
             hoso_audit_failures_total {}\n\
             # TYPE hoso_audit_batches_total counter\n\
             hoso_audit_batches_total {}\n\
             # TYPE hoso_audit_rollbacks_total counter\n\
             hoso_audit_rollbacks_total {}\n\
             # TYPE hoso_card_reads_total counter\n\
             hoso_card_reads_total {}\n",
            get(&self.responses_2xx),
            get(&self.responses_4xx),
            get(&self.responses_5xx),
            get(&self.documents_taken_in),
            get(&self.copies_served),
            get(&self.integrity_errors),
            get(&self.audit_failures),
            get(&self.audit_batches),
            get(&self.audit_rollbacks),
            get(&self.card_reads),
        )
    }
}
