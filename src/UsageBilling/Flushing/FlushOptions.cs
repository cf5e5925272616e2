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

    /// <summary>Client-side rate limit in meter-event calls per second; <see langword="null"/> (default) = 25 for test keys, 1 000 for live keys.</summary>
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
