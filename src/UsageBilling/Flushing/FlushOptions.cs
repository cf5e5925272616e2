namespace UsageBilling;

/// <summary>Tuning of the flusher, bound from <c>UsageBilling:Flush</c>. Every default suits a single app instance on Stripe test mode.</summary>
public sealed class FlushOptions
{
    /// <summary>Whether the background service runs. Default <see langword="true"/>; the CLI and tests call <see cref="IUsageFlusher.FlushOnceAsync(CancellationToken)"/> directly.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Time between background flush cycles. Default 60 s.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Events claimed per claim transaction, so millions of pending events never sit in memory at once. Default 5 000.</summary>
    public int ClaimBatchSize { get; set; } = 5000;

    /// <summary>Customer·meter keys leased per send round (each with all its due reports). Default 200.</summary>
    public int SendBatchSize { get; set; } = 200;

    /// <summary>Stripe calls in flight at once (never more than one per customer·meter). Default 8.</summary>
    public int MaxConcurrentCalls { get; set; } = 8;

    /// <summary>
    /// How reports reach Stripe. <see cref="FlushTransport.V1"/> (default): one <c>POST /v1/billing/meter_events</c> per
    /// report. <see cref="FlushTransport.V2Stream"/>: up to 100 reports per <c>POST /v2/billing/meter_event_stream</c>
    /// request, on a meter event session. The identifiers, and so exactly-once, are the same either way.
    /// </summary>
    public FlushTransport Transport { get; set; } = FlushTransport.V1;

    /// <summary>
    /// Client-side rate limit in Stripe calls per second (meter-event calls on v1, stream requests on v2);
    /// <see langword="null"/> (default) = Stripe's limit for the key and transport: 25 for test keys (test mode shares the
    /// basic limit; Stripe documents no higher one for the stream there), 1 000 for live keys on v1, 10 000 on the v2 stream.
    /// </summary>
    public double? RequestsPerSecond { get; set; }

    /// <summary>
    /// How long a flusher's lease on its reports runs unless renewed. A round renews it every third of this
    /// while it sends, and starts a Stripe call only while the lease has at least
    /// <see cref="StripeOptions.MaxCallDuration"/> left, so no call outlives the lease; it must therefore be
    /// longer than that. Another instance takes the reports over once it lapses — on PostgreSQL at once when the
    /// holder's process dies (its session locks die with it), on SQLite at once when the holder's process on this
    /// machine is gone. Default 5 minutes.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Most acknowledgements and failures written in one transaction. Marks are written as they arrive, in
    /// groups of whatever accumulated while the previous group was being written (at most this many), so a crash
    /// loses at most the marks of one group in flight — those reports are resent and Stripe answers "already
    /// exists". Default 50.
    /// </summary>
    public int MarkBatchSize { get; set; } = 50;

    /// <summary>First retry delay after a transient failure; doubles per attempt, with jitter. Default 2 s.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Longest retry delay. Default 10 minutes.</summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// A report first attempted longer ago than this and never acknowledged goes to needs-review instead
    /// of being resent: Stripe remembers identifiers for at least 24 h, so a later resend might count twice.
    /// Default 23 h.
    /// </summary>
    public TimeSpan ReviewAfter { get; set; } = TimeSpan.FromHours(23);

    /// <summary>The health check turns unhealthy when the oldest unreported usage is older than this. Default 15 minutes.</summary>
    public TimeSpan MaxLag { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Events older than this when claimed are never sent (reason <c>too_old_for_stripe</c>). Default 35 days minus 1 hour, a margin inside Stripe's 35-day window.</summary>
    public TimeSpan MaxEventAge { get; set; } = TimeSpan.FromDays(35) - TimeSpan.FromHours(1);
}

/// <summary>How the flusher sends reports to Stripe (<c>UsageBilling:Flush:Transport</c>).</summary>
public enum FlushTransport
{
    /// <summary>One v1 meter event per report (<c>POST /v1/billing/meter_events</c>), at most one call in flight per customer·meter.</summary>
    V1,

    /// <summary>
    /// Stripe's v2 meter event stream: a session token (renewed before its 15 minutes run out) and up to 100 reports per
    /// request. For apps whose report volume outgrows v1's 1 000 calls/s. Stripe validates stream events only
    /// asynchronously: a rejected report is named in a thin <c>v1.billing.meter.error_report_triggered</c> event, which the
    /// webhook endpoint applies (the report turns dead).
    /// </summary>
    V2Stream,
}
