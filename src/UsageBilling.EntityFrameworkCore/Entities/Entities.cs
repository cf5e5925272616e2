using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Entities;

/// <summary>A row of <c>usage_events</c>: one billable action, buffered until Stripe acknowledges it.</summary>
public sealed class UsageEvent
{
    /// <summary>Time-ordered (v7) id.</summary>
    public Guid Id { get; set; }

    /// <summary>The app's user; deleting the user deletes their events.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>The quantity, at least 1.</summary>
    public long Quantity { get; set; }

    /// <summary>When the action happened.</summary>
    public DateTimeOffset OccurredAt { get; set; }

    /// <summary>The caller's key, unique per user.</summary>
    public string? IdempotencyKey { get; set; }

    /// <summary>
    /// The report the event was claimed into, once claimed. The event is acknowledged by Stripe when that report is
    /// <c>sent</c> (its <see cref="UsageReport.SentAt"/>): the flusher's mark changes the report only, never its events.
    /// </summary>
    public Guid? ReportId { get; set; }

    /// <summary>When the event was recorded.</summary>
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>
/// A row of <c>usage_event_keys</c>: an idempotency key a user's event was recorded under. The key's uniqueness
/// lives here, not on <c>usage_events</c>, so that table can be partitioned by month on PostgreSQL (a partitioned
/// table's unique indexes must include the partition key). It goes with its event (void, retention, refusal).
/// </summary>
public sealed class UsageEventKey
{
    /// <summary>The app's user; deleting the user deletes their keys.</summary>
    public Guid UserId { get; set; }

    /// <summary>The caller's key, unique per user.</summary>
    public string IdempotencyKey { get; set; } = "";

    /// <summary>The event recorded under the key (<see cref="UsageEvent.Id"/>).</summary>
    public Guid EventId { get; set; }

    /// <summary>
    /// A digest of the request the key was used for, if the caller bound one: a replay of the key with another
    /// request is refused. It lives with the key, not on <c>usage_events</c>, so keyless events carry no column for it.
    /// </summary>
    public string? RequestFingerprint { get; set; }
}

/// <summary>
/// A row of <c>usage_period_totals</c>: one account's recorded usage of one meter in one billing period.
/// The recorder locks it in every recording transaction and checks limits against it, so concurrent
/// writers (threads, processes, app instances) serialize per account·meter·period and never overshoot.
/// </summary>
public sealed class UsagePeriodTotal
{
    /// <summary>The app's user; deleting the user deletes these rows.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>Inclusive start of the billing period.</summary>
    public DateTimeOffset PeriodStart { get; set; }

    /// <summary>Exclusive end of the billing period.</summary>
    public DateTimeOffset PeriodEnd { get; set; }

    /// <summary>Sum of the quantities recorded in the period.</summary>
    public long Quantity { get; set; }

    /// <summary>Number of events recorded in the period.</summary>
    public long EventCount { get; set; }
}

/// <summary>A row of <c>usage_account_limits</c>: an account's own caps and alert thresholds for one meter.</summary>
public sealed class UsageAccountLimit
{
    /// <summary>The app's user; deleting the user deletes these rows.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>The account's spend cap per period, in currency units (at most the plan's spend limit).</summary>
    public decimal? SpendCap { get; set; }

    /// <summary>The account's quantity cap per period (at most the plan's hard limit).</summary>
    public long? QuantityCap { get; set; }

    /// <summary>The account's alert thresholds as keys joined by <c>;</c> (for example <c>percent_of_included:80;amount:25</c>); <see langword="null"/> = the configured defaults.</summary>
    public string? AlertThresholds { get; set; }

    /// <summary>When the row last changed.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>
/// A row of <c>usage_alerts</c>: the outbox of usage alerts. Written in the recording transaction that
/// crossed the threshold, unique per account·meter·period·threshold, delivered at least once.
/// </summary>
public sealed class UsageAlertRecord
{
    /// <summary>The alert id, stable across redeliveries.</summary>
    public Guid Id { get; set; }

    /// <summary>The app's user; deleting the user deletes these rows.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>Inclusive start of the billing period.</summary>
    public DateTimeOffset PeriodStart { get; set; }

    /// <summary>Exclusive end of the billing period.</summary>
    public DateTimeOffset PeriodEnd { get; set; }

    /// <summary>The threshold key (for example <c>percent_of_included:80</c>).</summary>
    public string Threshold { get; set; } = "";

    /// <summary>The period's usage right after the crossing.</summary>
    public long Used { get; set; }

    /// <summary>The period's projected cost right after the crossing, in currency units.</summary>
    public decimal Amount { get; set; }

    /// <summary>When the crossing was recorded.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When every handler accepted it; <see langword="null"/> while pending.</summary>
    public DateTimeOffset? DeliveredAt { get; set; }

    /// <summary>Delivery attempts made.</summary>
    public int Attempts { get; set; }

    /// <summary>When the next attempt is due.</summary>
    public DateTimeOffset NextAttemptAt { get; set; }

    /// <summary>The dispatcher currently delivering it, if leased.</summary>
    public string? LeaseOwner { get; set; }

    /// <summary>When the current lease lapses.</summary>
    public DateTimeOffset? LeaseExpiresAt { get; set; }

    /// <summary>The last delivery error, for operators.</summary>
    public string? LastError { get; set; }
}

/// <summary>
/// A row of <c>usage_reports</c>: the usage of one Stripe customer, meter and billing period sent
/// as one meter event. Its id is both the meter event identifier and the Idempotency-Key; its
/// content never changes once written.
/// </summary>
public sealed class UsageReport
{
    /// <summary>The report id: the meter event <c>identifier</c> and the <c>Idempotency-Key</c>.</summary>
    public Guid Id { get; set; }

    /// <summary>The Stripe customer (<c>cus_…</c>).</summary>
    public string StripeCustomerId { get; set; } = "";

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>The total quantity of the report's events.</summary>
    public long Quantity { get; set; }

    /// <summary>How many events the report holds.</summary>
    public int EventCount { get; set; }

    /// <summary>The meter event timestamp: the latest <c>occurred_at</c> of the report's events.</summary>
    public DateTimeOffset Timestamp { get; set; }

    /// <summary>Inclusive start of the billing period.</summary>
    public DateTimeOffset PeriodStart { get; set; }

    /// <summary>Exclusive end of the billing period.</summary>
    public DateTimeOffset PeriodEnd { get; set; }

    /// <summary>Where the report stands.</summary>
    public UsageReportStatus Status { get; set; }

    /// <summary>How many times sending was attempted.</summary>
    public int Attempts { get; set; }

    /// <summary>When the next attempt is due.</summary>
    public DateTimeOffset NextAttemptAt { get; set; }

    /// <summary>When the first attempt was made.</summary>
    public DateTimeOffset? FirstAttemptAt { get; set; }

    /// <summary>The last error, readable by operators.</summary>
    public string? LastError { get; set; }

    /// <summary>When the report was claimed.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When Stripe acknowledged it.</summary>
    public DateTimeOffset? SentAt { get; set; }

    /// <summary>The flusher currently sending it, if leased.</summary>
    public string? LeaseOwner { get; set; }

    /// <summary>When the current lease lapses.</summary>
    public DateTimeOffset? LeaseExpiresAt { get; set; }
}

/// <summary>
/// The counters of a usage rollup row (<see cref="UsageHourly"/>, <see cref="UsageDaily"/>): one user's
/// usage of one meter in one time bucket, kept in step with <c>usage_events</c> by the recorder (in the
/// insert's transaction) and the flusher (when Stripe acknowledges a report), so summaries read
/// dozens of rows instead of millions of events.
/// </summary>
public abstract class UsageRollupRow
{
    /// <summary>The app's user; deleting the user deletes these rows.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe meter event name.</summary>
    public string Meter { get; set; } = "";

    /// <summary>Sum of the quantities of the bucket's events.</summary>
    public long Quantity { get; set; }

    /// <summary>Number of the bucket's events.</summary>
    public long EventCount { get; set; }

    /// <summary>Sum of the quantities Stripe has acknowledged.</summary>
    public long ReportedQuantity { get; set; }

    /// <summary>Number of events Stripe has acknowledged.</summary>
    public long ReportedCount { get; set; }

    /// <summary>When Stripe last acknowledged an event of this bucket.</summary>
    public DateTimeOffset? LastReportedAt { get; set; }
}

/// <summary>A row of <c>usage_hourly</c>: a user's usage of a meter in one UTC hour.</summary>
public sealed class UsageHourly : UsageRollupRow
{
    /// <summary>The start of the UTC hour.</summary>
    public DateTimeOffset Hour { get; set; }
}

/// <summary>A row of <c>usage_daily</c>: a user's usage of a meter on one UTC day.</summary>
public sealed class UsageDaily : UsageRollupRow
{
    /// <summary>The start (midnight UTC) of the day.</summary>
    public DateTimeOffset Day { get; set; }

    /// <summary>
    /// The day's hours were folded into this row: its <c>usage_hourly</c> rows are deleted and never read again,
    /// and a summary whose range starts or ends inside the day reads those hours from <c>usage_events</c>
    /// (retention keeps such an edge day's events). Set by retention for closed days with few events; never cleared.
    /// </summary>
    public bool HoursFolded { get; set; }
}

/// <summary>A row of <c>billing_customers</c>: the app user's Stripe customer and plan.</summary>
public sealed class BillingCustomer
{
    /// <summary>The app's user; deleting the user deletes this row.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe customer (<c>cus_…</c>), unique.</summary>
    public string StripeCustomerId { get; set; } = "";

    /// <summary>The configured plan the user is subscribed to, if any.</summary>
    public string? PlanId { get; set; }

    /// <summary>When the row was created.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When the row last changed.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>A row of <c>billing_subscription_items</c>: a Stripe subscription item and its current period.</summary>
public sealed class BillingSubscriptionItem
{
    /// <summary>The Stripe subscription item id (<c>si_…</c>).</summary>
    public string Id { get; set; } = "";

    /// <summary>The Stripe subscription id (<c>sub_…</c>).</summary>
    public string SubscriptionId { get; set; } = "";

    /// <summary>The app's user; deleting the user deletes this row.</summary>
    public Guid UserId { get; set; }

    /// <summary>The Stripe price id.</summary>
    public string PriceId { get; set; } = "";

    /// <summary>The meter event name for a metered item; <see langword="null"/> for the flat item.</summary>
    public string? Meter { get; set; }

    /// <summary>The subscription's status (<c>active</c>, <c>canceled</c>, …).</summary>
    public string Status { get; set; } = "";

    /// <summary>Inclusive start of the item's current period.</summary>
    public DateTimeOffset CurrentPeriodStart { get; set; }

    /// <summary>Exclusive end of the item's current period.</summary>
    public DateTimeOffset CurrentPeriodEnd { get; set; }

    /// <summary>When the row last changed.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>The minimal user table of <see cref="UsageBillingDbContext"/>, for apps without a user table of their own.</summary>
public class BillingUser
{
    /// <summary>The user id.</summary>
    public Guid Id { get; set; }

    /// <summary>The user's e-mail, if known.</summary>
    public string? Email { get; set; }

    /// <summary>When the user was created.</summary>
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>
/// A row of <c>usage_api_keys</c>: a key other services use to record usage over HTTP. Only the SHA-256
/// of the secret is stored; the secret is shown once, when the key is created.
/// </summary>
public sealed class UsageApiKey
{
    /// <summary>The key id.</summary>
    public Guid Id { get; set; }

    /// <summary>A name for operators (what uses the key).</summary>
    public string Name { get; set; } = "";

    /// <summary>The first characters of the secret, so operators can tell keys apart.</summary>
    public string Prefix { get; set; } = "";

    /// <summary>Lowercase hex SHA-256 of the whole secret; unique.</summary>
    public string SecretHash { get; set; } = "";

    /// <summary>The one account the key may record for, or <see langword="null"/> for every account.</summary>
    public Guid? UserId { get; set; }

    /// <summary>When the key was created.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When the key was revoked; a revoked key authenticates nothing.</summary>
    public DateTimeOffset? RevokedAt { get; set; }
}

/// <summary>
/// A row of <c>usage_corrections</c>: the audit of one voided usage event (who, why, what) and, when Stripe
/// already has the event's report, the outbox of the Stripe call that corrects it (a cancel of the report,
/// sent exactly once by the flusher).
/// </summary>
public sealed class UsageCorrection
{
    /// <summary>The correction id (also the first Idempotency-Key of its Stripe call).</summary>
    public Guid Id { get; set; }

    /// <summary>The voided event's account.</summary>
    public Guid UserId { get; set; }

    /// <summary>The voided event's id (the event row is gone).</summary>
    public Guid EventId { get; set; }

    /// <summary>The voided event's meter.</summary>
    public string Meter { get; set; } = "";

    /// <summary>The voided event's quantity.</summary>
    public long Quantity { get; set; }

    /// <summary>When the voided event happened.</summary>
    public DateTimeOffset OccurredAt { get; set; }

    /// <summary>The voided event's idempotency key, if it had one.</summary>
    public string? IdempotencyKey { get; set; }

    /// <summary>How the usage was corrected: <c>removed</c>, <c>cancel_and_resend</c> or <c>compensated</c>.</summary>
    public string Kind { get; set; } = "";

    /// <summary>The report the event was in, if it was claimed.</summary>
    public Guid? ReportId { get; set; }

    /// <summary>The report that carries the correction to Stripe: the resend or the negative event.</summary>
    public Guid? CorrectionReportId { get; set; }

    /// <summary><c>done</c>, <c>pending</c> (a Stripe call is owed) or <c>failed</c>.</summary>
    public string Status { get; set; } = "";

    /// <summary>Who asked for the correction.</summary>
    public string Actor { get; set; } = "";

    /// <summary>Why.</summary>
    public string Reason { get; set; } = "";

    /// <summary>Stripe calls attempted.</summary>
    public int Attempts { get; set; }

    /// <summary>When the next attempt is due.</summary>
    public DateTimeOffset NextAttemptAt { get; set; }

    /// <summary>The flusher making the call, if leased.</summary>
    public string? LeaseOwner { get; set; }

    /// <summary>When the current lease lapses.</summary>
    public DateTimeOffset? LeaseExpiresAt { get; set; }

    /// <summary>The last error, for operators.</summary>
    public string? LastError { get; set; }

    /// <summary>When the correction was asked for.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When it was complete (Stripe acknowledged its call, or none was needed).</summary>
    public DateTimeOffset? CompletedAt { get; set; }
}
