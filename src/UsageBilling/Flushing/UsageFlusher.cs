using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;
using UsageBilling.Stripe;

namespace UsageBilling.Flushing;

/// <summary>
/// Claim → send → mark. Claims group events into immutable reports; each report is sent as one
/// meter event whose <c>identifier</c> is the report id, so Stripe itself rejects a second copy
/// ("already exists with identifier", read as delivered). A crash anywhere leaves either unclaimed
/// events or unsent reports, both picked up by the next cycle of any instance.
/// </summary>
internal sealed partial class UsageFlusher : IUsageFlusher, IDisposable
{
    private readonly IUsageFlushStore _store;
    private readonly IUsageStore _usage;
    private readonly IMeterEventSender _sender;
    private readonly FlushOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<UsageFlusher> _logger;
    private readonly FlushState _state;
    private readonly HashSet<string> _countMeters;
    private readonly RateLimiter _rateLimiter;
    private readonly string _owner = $"{Environment.ProcessId}:{Guid.NewGuid():N}";
    private readonly Counter<long> _sent;
    private readonly Counter<long> _retried;
    private readonly Counter<long> _dead;
    private readonly Counter<long> _claimed;
    private readonly Histogram<double> _callDuration;

    public UsageFlusher(
        IUsageFlushStore store,
        IUsageStore usage,
        IMeterEventSender sender,
        IOptions<FlushOptions> options,
        IOptions<StripeOptions> stripe,
        IOptions<Configuration.UsageBillingOptions> billing,
        TimeProvider time,
        ILogger<UsageFlusher> logger,
        UsageBillingMetrics metrics,
        FlushState state)
    {
        _store = store;
        _usage = usage;
        _sender = sender;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _state = state;
        _countMeters = [.. billing.Value.Meters.Where(m => m.Value.Aggregation == Configuration.MeterAggregation.Count).Select(m => m.Key)];
        var perSecond = _options.RequestsPerSecond ?? (stripe.Value.IsLiveMode ? 1000 : 25);
        _rateLimiter = CreateRateLimiter(perSecond);
        _sent = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_sent", "{report}", "Reports Stripe acknowledged.");
        _retried = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_retried", "{report}", "Report attempts that failed transiently.");
        _dead = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_dead", "{report}", "Reports that ended dead.");
        _claimed = metrics.Meter.CreateCounter<long>("usagebilling.flush.events_claimed", "{event}", "Events grouped into reports.");
        _callDuration = metrics.Meter.CreateHistogram<double>("usagebilling.stripe.call_duration", "s", "Duration of meter-event calls to Stripe.");
        metrics.Meter.CreateObservableGauge("usagebilling.flush.pending_events", () => state.Backlog?.PendingEvents ?? 0, "{event}", "Events not yet claimed into a report, as of the last flush.");
        metrics.Meter.CreateObservableGauge(
            "usagebilling.flush.oldest_pending_age",
            () => state.Backlog?.OldestUnreportedAt is { } oldest ? Math.Max(0, (time.GetUtcNow() - oldest).TotalSeconds) : 0,
            "s",
            "Age of the oldest usage Stripe has not acknowledged, as of the last flush.");
    }

    /// <summary>A token bucket refilled in small steps, so permits flow evenly rather than in bursts of a whole second.</summary>
    private static TokenBucketRateLimiter CreateRateLimiter(double perSecond)
    {
        const int stepsPerSecond = 20;
        var perStep = Math.Max(1, (int)Math.Round(perSecond / stepsPerSecond));
        var period = TimeSpan.FromSeconds(perStep / perSecond);
        return new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = perStep,
            TokensPerPeriod = perStep,
            ReplenishmentPeriod = period,
            QueueLimit = int.MaxValue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            AutoReplenishment = true,
        });
    }

    public Task<FlushResult> FlushOnceAsync(CancellationToken cancellationToken = default) =>
        RunAsync(null, null, null, cancellationToken);

    public Task<FlushResult> FlushOnceAsync(IProgress<FlushResult> progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(progress);
        return RunAsync(null, null, progress, cancellationToken);
    }

    public async Task<FlushResult> FlushCustomerAsync(Guid userId, CancellationToken cancellationToken = default)
    {
        var state = await _usage.GetBillingStateAsync(userId, cancellationToken).ConfigureAwait(false);
        if (state is null)
        {
            return FlushResult.Empty;
        }

        return await RunAsync(userId, state.StripeCustomerId, null, cancellationToken).ConfigureAwait(false);
    }

    private async Task<FlushResult> RunAsync(Guid? userId, string? customerId, IProgress<FlushResult>? progress, CancellationToken cancellationToken)
    {
        using var activity = UsageBillingMetrics.ActivitySource.StartActivity(userId is null ? "usagebilling.flush" : "usagebilling.flush_customer");
        var result = FlushResult.Empty;

        // Claim everything due, one bounded batch at a time.
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = _time.GetUtcNow();
            var claim = await _store.ClaimAsync(
                _options.ClaimBatchSize,
                userId,
                (events, items) => ReportPlanning.Plan(events, items, now, _options.MaxEventAge, _countMeters),
                cancellationToken).ConfigureAwait(false);
            var claimed = claim.EventsClaimed;
            var dead = claim.ReportsDead;
            result = result.Add(new FlushResult(claimed, claim.ReportsCreated, 0, 0, dead, 0));
            progress?.Report(result);
            _claimed.Add(claimed);
            if (dead > 0)
            {
                _dead.Add(dead);
                LogTooOld(dead);
            }

            if (claimed < _options.ClaimBatchSize)
            {
                break;
            }
        }

        // Send rounds until nothing is due (reports in backoff are not due).
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = _time.GetUtcNow();
            var leased = await _store.LeaseDueReportsAsync(now, _options.SendBatchSize, customerId, _owner, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false);
            if (leased.Count == 0)
            {
                break;
            }

            var round = await SendRoundAsync(leased, cancellationToken).ConfigureAwait(false);
            result = result.Add(round);
            progress?.Report(result);
            if (round.ConfigurationError is not null)
            {
                break;
            }
        }

        _state.Completed(_time.GetUtcNow(), result);
        if (userId is null)
        {
            _state.BacklogSeen(await _store.GetBacklogAsync(cancellationToken).ConfigureAwait(false));
        }

        activity?.SetTag("usagebilling.reports_sent", result.ReportsSent);
        return result;
    }

    private async Task<FlushResult> SendRoundAsync(IReadOnlyList<LeasedReport> leased, CancellationToken cancellationToken)
    {
        var acknowledged = new ConcurrentBag<Guid>();
        var failures = new ConcurrentBag<ReportFailure>();
        string? configurationError = null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);

        // One sequential lane per customer·meter: never two calls in flight for one key.
        var lanes = leased.GroupBy(r => (r.StripeCustomerId, r.Meter)).Select(g => g.ToList()).ToList();
        try
        {
            await Parallel.ForEachAsync(
                lanes,
                new ParallelOptions { MaxDegreeOfParallelism = _options.MaxConcurrentCalls, CancellationToken = stop.Token },
                async (lane, ct) =>
                {
                    foreach (var report in lane)
                    {
                        if (Unsendable(report) is { } unsendable)
                        {
                            failures.Add(unsendable);
                            LogDead(report.Id, unsendable.Error);
                            continue;
                        }

                        var (kind, message) = await SendOneAsync(report, ct).ConfigureAwait(false);
                        var now = _time.GetUtcNow();
                        switch (kind)
                        {
                            case SendOutcomeKind.Delivered:
                                acknowledged.Add(report.Id);
                                break;
                            case SendOutcomeKind.Dead:
                                failures.Add(new ReportFailure(report.Id, UsageReportStatus.Dead, report.Attempts + 1, now, message));
                                LogDead(report.Id, message);
                                break;
                            case SendOutcomeKind.Configuration:
                                configurationError = message;
                                failures.Add(new ReportFailure(report.Id, UsageReportStatus.Pending, report.Attempts, now + _options.RetryBaseDelay, message));
                                await stop.CancelAsync().ConfigureAwait(false);
                                return;
                            default:
                                failures.Add(new ReportFailure(report.Id, UsageReportStatus.Pending, report.Attempts + 1, now + Backoff(report.Attempts + 1), message));
                                LogRetry(report.Id, report.Attempts + 1, message);
                                break;
                        }
                    }
                }).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (configurationError is not null && !cancellationToken.IsCancellationRequested)
        {
            // Stopped on purpose: Stripe refused our key; no point sending the rest.
        }
        finally
        {
            // Marks are written even when the caller cancels: what Stripe acknowledged must not be forgotten.
            if (!acknowledged.IsEmpty)
            {
                await _store.MarkSentAsync([.. acknowledged], _time.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
            }

            if (!failures.IsEmpty)
            {
                await _store.MarkFailedAsync([.. failures], CancellationToken.None).ConfigureAwait(false);
            }
        }

        if (configurationError is not null)
        {
            _state.ConfigurationFailed(configurationError, _time.GetUtcNow());
            LogConfigurationError(configurationError);
        }
        else
        {
            _state.ConfigurationOk();
        }

        var deadCount = failures.Count(f => f.Status == UsageReportStatus.Dead);
        var retried = configurationError is null ? failures.Count(f => f.Status == UsageReportStatus.Pending) : 0;
        var review = failures.Count(f => f.Status == UsageReportStatus.NeedsReview);
        _sent.Add(acknowledged.Count);
        _retried.Add(retried);
        _dead.Add(deadCount);
        return new FlushResult(0, 0, acknowledged.Count, retried, deadCount, review, configurationError);
    }

    /// <summary>Reports that must not be sent (any more): too late for Stripe's dedup window or its timestamp window.</summary>
    private ReportFailure? Unsendable(LeasedReport report)
    {
        var now = _time.GetUtcNow();
        if (now - report.FirstAttemptAt > _options.ReviewAfter)
        {
            // Stripe's identifier memory may be gone: a resend could count twice. A person (or `reconcile --repair`) decides.
            return new ReportFailure(report.Id, UsageReportStatus.NeedsReview, report.Attempts, now, $"needs_review: first attempted {report.FirstAttemptAt:O} and never acknowledged; Stripe's 24 h identifier window may have passed, so it is not resent blindly.");
        }

        if (report.Timestamp < now - (UsageBilling.Recording.UsageRules.MaxAge - TimeSpan.FromMinutes(1)))
        {
            return new ReportFailure(report.Id, UsageReportStatus.Dead, report.Attempts, now, $"{ReportPlanning.TooOldReason}: timestamp {report.Timestamp:O} fell out of Stripe's 35-day window before it could be delivered.");
        }

        return null;
    }

    private async Task<(SendOutcomeKind Kind, string Message)> SendOneAsync(LeasedReport report, CancellationToken cancellationToken)
    {
        // The first attempt uses the report id itself as Idempotency-Key. Stripe replays a stored
        // result (even a 500) for 24 h, so later attempts get their own key; the unchanging
        // identifier is what makes a resend harmless.
        var key = report.Attempts == 0 ? report.Id.ToString() : $"{report.Id}-r{report.Attempts}";
        using var lease = await _rateLimiter.AcquireAsync(1, cancellationToken).ConfigureAwait(false);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await _sender.SendAsync(report, key, cancellationToken).ConfigureAwait(false);
            return (SendOutcomeKind.Delivered, "ok");
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return StripeErrorClassifier.Classify(ex);
        }
        finally
        {
            _callDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        // Exponential with "equal jitter": half fixed, half random, capped.
        var exp = Math.Min(_options.RetryMaxDelay.TotalMilliseconds, _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30)));
        return TimeSpan.FromMilliseconds((exp / 2) + (RandomNumberGenerator.GetInt32(1000) / 1000.0 * exp / 2));
    }

    public void Dispose() => _rateLimiter.Dispose();

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "{Count} reports hold events older than Stripe's window; marked dead, never sent")]
    private partial void LogTooOld(int count);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Report {ReportId} is dead: {Reason}")]
    private partial void LogDead(Guid reportId, string reason);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Report {ReportId} attempt {Attempt} failed, will retry: {Reason}")]
    private partial void LogRetry(Guid reportId, int attempt, string reason);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Critical, Message = "Stripe refused UsageBilling's credentials; flushing stopped until the key is fixed: {Reason}")]
    private partial void LogConfigurationError(string reason);
}
