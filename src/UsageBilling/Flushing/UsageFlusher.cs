using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// Claim → send → mark. Claims group events into immutable reports; each report is sent as one
/// meter event whose <c>identifier</c> is the report id, so Stripe itself rejects a second copy
/// ("already exists with identifier", read as delivered). A crash anywhere leaves either unclaimed
/// events or unsent reports, both picked up by the next cycle of any instance.
/// </summary>
internal sealed partial class UsageFlusher : IUsageFlusher, IDisposable
{
    /// <summary>
    /// Buckets for Stripe call durations in seconds, from 5 ms to Stripe's 80 s timeout (OpenTelemetry's
    /// default buckets are for milliseconds and would put every call in the first one).
    /// </summary>
    private static readonly double[] StripeCallBuckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 80];

    private readonly IUsageFlushStore _store;
    private readonly IUsageCorrectionStore _corrections;
    private readonly IUsageStore _usage;
    private readonly IMeterEventSender _sender;
    private readonly IMeterEventStreamSender _streamSender;
    private readonly FlushOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<UsageFlusher> _logger;
    private readonly FlushState _state;
    private readonly HashSet<string> _countMeters;
    private readonly IReadOnlyDictionary<string, MeterDefinition> _meters;
    private readonly IStripeMeterDirectory _meterDirectory;
    private readonly TimeSpan _maxCallDuration;
    private readonly RateLimiter _rateLimiter;
    private readonly SemaphoreSlim _checkGate = new(1, 1);
    private bool _metersChecked;
    private readonly Counter<long> _sent;
    private readonly Counter<long> _retried;
    private readonly Counter<long> _dead;
    private readonly Counter<long> _claimed;
    private readonly Histogram<double> _callDuration;

    public UsageFlusher(
        IUsageFlushStore store,
        IUsageCorrectionStore corrections,
        IUsageStore usage,
        IMeterEventSender sender,
        IMeterEventStreamSender streamSender,
        IStripeMeterDirectory meterDirectory,
        IOptions<FlushOptions> options,
        IOptions<StripeOptions> stripe,
        IOptions<UsageBillingOptions> billing,
        TimeProvider time,
        ILogger<UsageFlusher> logger,
        UsageBillingMetrics metrics,
        FlushState state)
    {
        _store = store;
        _corrections = corrections;
        _usage = usage;
        _sender = sender;
        _streamSender = streamSender;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _state = state;
        _meterDirectory = meterDirectory;
        _meters = billing.Value.Meters;
        _maxCallDuration = stripe.Value.MaxCallDuration;
        _countMeters = [.. billing.Value.Meters.Where(m => m.Value.Aggregation == MeterAggregation.Count).Select(m => m.Key)];
        var perSecond = _options.RequestsPerSecond ?? (!stripe.Value.IsLiveMode ? 25 : _options.Transport == FlushTransport.V2Stream ? 10_000 : 1000);
        _rateLimiter = CreateRateLimiter(perSecond);
        _sent = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_sent", "{report}", "Reports Stripe acknowledged.");
        _retried = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_retried", "{report}", "Report attempts that failed transiently.");
        _dead = metrics.Meter.CreateCounter<long>("usagebilling.flush.reports_dead", "{report}", "Reports that ended dead.");
        _claimed = metrics.Meter.CreateCounter<long>("usagebilling.flush.events_claimed", "{event}", "Events grouped into reports.");
        _callDuration = metrics.Meter.CreateHistogram<double>(
            "usagebilling.stripe.call_duration",
            "s",
            "Duration of meter-event calls to Stripe.",
            tags: null,
            advice: new System.Diagnostics.Metrics.InstrumentAdvice<double> { HistogramBucketBoundaries = StripeCallBuckets });
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
        if (await CheckMetersAsync(cancellationToken).ConfigureAwait(false) is { } mismatch)
        {
            // Refused before claiming: a claim is where a report's value is fixed.
            result = result with { ConfigurationError = mismatch };
            _state.Completed(_time.GetUtcNow(), result);
            return result;
        }

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

        // Owed cancels go before the send rounds: a cancel's completion writes the resend report those rounds send
        // (for one customer too: the invoice.created flush then bills the corrected usage).
        await SendCorrectionsAsync(userId, cancellationToken).ConfigureAwait(false);

        // Send rounds while anything this flusher can lease is due (reports in backoff are not due; keys
        // another live flusher holds are skipped by the lease, which then offers the next free ones).
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = _time.GetUtcNow();
            // A fresh owner name per round: two rounds of one process at once (the background cycle and an
            // invoice-boundary flush) are two owners, so neither can take or release the other's reports.
            var owner = FlusherIdentity.NewOwner();
            var lease = await _store.LeaseDueReportsAsync(now, _options.SendBatchSize, customerId, owner, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false);
            FlushResult round;
            await using (lease.ConfigureAwait(false))
            {
                if (lease.Reports.Count == 0)
                {
                    if (lease.KeysHeldElsewhere > 0)
                    {
                        LogHeldElsewhere(lease.KeysHeldElsewhere);
                    }

                    break;
                }

                round = await SendRoundAsync(lease, owner, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false);
            }

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

    /// <summary>
    /// Verifies once per flusher, before its first claim, that the configured meters match Stripe's meters and
    /// this database's reports (<see cref="MeterConfigurationCheck"/>). Returns the refusal, or null to go on. A
    /// Stripe read that fails for a passing reason skips the Stripe half this time (the database half still runs)
    /// and is tried again next cycle; Stripe refusing the key is a configuration error like a refused send.
    /// </summary>
    private async Task<string?> CheckMetersAsync(CancellationToken cancellationToken)
    {
        if (_metersChecked)
        {
            return null;
        }

        await _checkGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_metersChecked)
            {
                return null;
            }

            IReadOnlyList<StripeMeterInfo>? remote = null;
            try
            {
                remote = await _meterDirectory.ListAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                var (kind, message) = StripeErrorClassifier.Classify(ex);
                if (kind == SendOutcomeKind.Configuration)
                {
                    _state.ConfigurationFailed(message, _time.GetUtcNow());
                    LogConfigurationError(message);
                    return message;
                }

                LogMeterCheckSkipped(message);
            }

            var evidence = await _store.GetAggregationEvidenceAsync(cancellationToken).ConfigureAwait(false);
            var problems = MeterConfigurationCheck.Mismatches(_meters, remote, evidence);
            if (remote is not null)
            {
                foreach (var missing in _meters.Keys.Where(k => !remote.Any(m => m.EventName == k && m.Status == "active")).Order(StringComparer.Ordinal))
                {
                    LogMeterMissing(missing);
                }
            }

            if (problems.Count > 0)
            {
                var message = $"meter configuration does not match, flushing refused: {string.Join("; ", problems)}.";
                _state.ConfigurationFailed(message, _time.GetUtcNow());
                LogMeterMismatch(message);
                return message;
            }

            _metersChecked = remote is not null;
            return null;
        }
        finally
        {
            _checkGate.Release();
        }
    }

    /// <summary>A mark for the writer: an acknowledgement or a failure.</summary>
    private readonly record struct Mark(Guid Id, ReportFailure? Failure);

    private async Task<FlushResult> SendRoundAsync(IReportLease lease, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        var sent = 0;
        var failures = new ConcurrentBag<ReportFailure>();
        string? configurationError = null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);

        // Reports not yet written as sent or failed: what the heartbeat renews.
        var unwritten = new ConcurrentDictionary<Guid, byte>(lease.Reports.Select(r => KeyValuePair.Create(r.Id, (byte)0)));
        var expiresAt = leaseUntil.UtcTicks;

        // Marks are committed as they arrive: one writer takes whatever accumulated while it wrote the last
        // group (at most MarkBatchSize), so a crash loses at most one group in flight and Stripe's
        // "already exists" answers the resend of those.
        var marks = Channel.CreateUnbounded<Mark>(new UnboundedChannelOptions { SingleReader = true });
        var writer = Task.Run(() => WriteMarksAsync(marks.Reader, owner, unwritten), CancellationToken.None);

        // Renews the lease every third of its duration while the round sends. A failed renewal, or a report
        // another owner took, stops new sends: a lease never lapses unnoticed.
        using var heartbeatStop = new CancellationTokenSource();
        var heartbeat = Task.Run(
            async () =>
            {
                var every = _options.LeaseDuration / 3;
                while (!heartbeatStop.IsCancellationRequested)
                {
                    try
                    {
                        await Task.Delay(every, _time, heartbeatStop.Token).ConfigureAwait(false);
                        var at = _time.GetUtcNow();
                        // Not cancelled midway when the round ends: a renewal in flight finishes (the round waits for it).
                        if (!await lease.RenewAsync([.. unwritten.Keys], at + _options.LeaseDuration, CancellationToken.None).ConfigureAwait(false))
                        {
                            LogLeaseLost("another flusher took over one of its reports");
                            Interlocked.Exchange(ref expiresAt, 0);
                            await stop.CancelAsync().ConfigureAwait(false);
                            return;
                        }

                        Interlocked.Exchange(ref expiresAt, (at + _options.LeaseDuration).UtcTicks);
                    }
                    catch (OperationCanceledException) when (heartbeatStop.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex)
                    {
                        // The expiry stays where the last renewal put it: sends stop once it is too close.
                        LogLeaseLost($"renewal failed: {ex.Message}");
                    }
                }
            },
            CancellationToken.None);

        // v1: one sequential lane per customer·meter, never two calls in flight for one key. v2 stream: each lane is
        // one stream request of up to 100 reports (the stream has no per customer·meter rule).
        var stream = _options.Transport == FlushTransport.V2Stream;
        var lanes = stream
            ? lease.Reports.Chunk(IMeterEventStreamSender.MaxEvents).Select(c => c.ToList()).ToList()
            : lease.Reports.GroupBy(r => (r.StripeCustomerId, r.Meter)).Select(g => g.ToList()).ToList();
        var stoppedForLease = 0;
        Func<DateTimeOffset> leaseExpiresAt = () => new DateTimeOffset(Interlocked.Read(ref expiresAt), TimeSpan.Zero);

        // Applies one report's outcome; true when the lane must stop (nothing sent for want of lease, or Stripe refused our key).
        async ValueTask<bool> ApplyAsync(LeasedReport report, SendOutcomeKind? kind, string message)
        {
            var now = _time.GetUtcNow();
            ReportFailure? failure = null;
            switch (kind)
            {
                case SendOutcomeKind.Delivered:
                    Interlocked.Increment(ref sent);
                    break;
                case SendOutcomeKind.Dead:
                    failure = new ReportFailure(report.Id, UsageReportStatus.Dead, report.Attempts + 1, now, message);
                    LogDead(report.Id, message);
                    break;
                case SendOutcomeKind.Configuration:
                    configurationError = message;
                    failure = new ReportFailure(report.Id, UsageReportStatus.Pending, report.Attempts, now + _options.RetryBaseDelay, message);
                    break;
                case null:
                    // Not sent: the lease could not outlast another call. Released at the round's end, due at once.
                    Interlocked.Increment(ref stoppedForLease);
                    return true;
                default:
                    failure = new ReportFailure(report.Id, UsageReportStatus.Pending, report.Attempts + 1, now + Backoff(report.Attempts + 1), message);
                    LogRetry(report.Id, report.Attempts + 1, message);
                    break;
            }

            if (failure is not null)
            {
                failures.Add(failure);
            }

            marks.Writer.TryWrite(new Mark(report.Id, failure));
            if (kind == SendOutcomeKind.Configuration)
            {
                await stop.CancelAsync().ConfigureAwait(false);
                return true;
            }

            return false;
        }

        bool Sendable(LeasedReport report)
        {
            if (Unsendable(report) is not { } unsendable)
            {
                return true;
            }

            failures.Add(unsendable);
            marks.Writer.TryWrite(new Mark(report.Id, unsendable));
            LogDead(report.Id, unsendable.Error);
            return false;
        }

        try
        {
            await Parallel.ForEachAsync(
                lanes,
                new ParallelOptions { MaxDegreeOfParallelism = _options.MaxConcurrentCalls, CancellationToken = stop.Token },
                async (lane, ct) =>
                {
                    if (stream)
                    {
                        var batch = lane.Where(Sendable).ToList();
                        if (batch.Count == 0)
                        {
                            return;
                        }

                        var (kind, message) = await SendBatchAsync(batch, leaseExpiresAt, ct).ConfigureAwait(false);
                        foreach (var report in batch)
                        {
                            if (await ApplyAsync(report, kind, message).ConfigureAwait(false))
                            {
                                return;
                            }
                        }

                        return;
                    }

                    foreach (var report in lane)
                    {
                        if (!Sendable(report))
                        {
                            continue;
                        }

                        var (kind, message) = await SendOneAsync(report, leaseExpiresAt, ct).ConfigureAwait(false);
                        if (await ApplyAsync(report, kind, message).ConfigureAwait(false))
                        {
                            return;
                        }
                    }
                }).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Stopped on purpose: Stripe refused our key, or the lease was lost; no point sending the rest.
        }
        finally
        {
            // Marks are written even when the caller cancels: what Stripe acknowledged must not be forgotten.
            await heartbeatStop.CancelAsync().ConfigureAwait(false);
            await heartbeat.ConfigureAwait(false);
            marks.Writer.TryComplete();
            await writer.ConfigureAwait(false);
        }

        if (stoppedForLease > 0)
        {
            LogStoppedForLease(stoppedForLease);
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
        _sent.Add(sent);
        _retried.Add(retried);
        _dead.Add(deadCount);
        return new FlushResult(0, 0, sent, retried, deadCount, review, configurationError);
    }

    /// <summary>Writes marks in groups as they arrive, until the round completes the channel; a failed write is retried, never dropped silently.</summary>
    private async Task WriteMarksAsync(ChannelReader<Mark> reader, string owner, ConcurrentDictionary<Guid, byte> unwritten)
    {
        var acks = new List<Guid>();
        var failures = new List<ReportFailure>();
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            while (acks.Count + failures.Count < _options.MarkBatchSize && reader.TryRead(out var mark))
            {
                if (mark.Failure is { } failure)
                {
                    failures.Add(failure);
                }
                else
                {
                    acks.Add(mark.Id);
                }
            }

            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    if (acks.Count > 0)
                    {
                        await _store.MarkSentAsync(acks, _time.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
                        foreach (var id in acks)
                        {
                            unwritten.TryRemove(id, out _);
                        }

                        acks.Clear();
                    }

                    if (failures.Count > 0)
                    {
                        await _store.MarkFailedAsync(failures, owner, CancellationToken.None).ConfigureAwait(false);
                        foreach (var f in failures)
                        {
                            unwritten.TryRemove(f.Id, out _);
                        }

                        failures.Clear();
                    }

                    break;
                }
                catch (Exception ex) when (attempt < 5)
                {
                    // A passing database fault: try again shortly. After five the round fails loudly; the
                    // reports stay pending under the lease, and a later lease resends them (Stripe dedups).
                    LogMarkRetry(attempt, ex.Message);
                    await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), _time, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
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

        if (report.Timestamp < now - (UsageBilling.UsageRules.MaxAge - TimeSpan.FromMinutes(1)))
        {
            return new ReportFailure(report.Id, UsageReportStatus.Dead, report.Attempts, now, $"{ReportPlanning.TooOldReason}: timestamp {report.Timestamp:O} fell out of Stripe's 35-day window before it could be delivered.");
        }

        return null;
    }

    /// <summary>Sends one report, or returns a null kind without calling Stripe when the lease would not outlast the call.</summary>
    private async Task<(SendOutcomeKind? Kind, string Message)> SendOneAsync(LeasedReport report, Func<DateTimeOffset> leaseExpiresAt, CancellationToken cancellationToken)
    {
        // The first attempt uses the report id itself as Idempotency-Key. Stripe replays a stored
        // result (even a 500) for 24 h, so later attempts get their own key; the unchanging
        // identifier is what makes a resend harmless.
        var key = report.Attempts == 0 ? report.Id.ToString() : $"{report.Id}-r{report.Attempts}";
        using var permit = await _rateLimiter.AcquireAsync(1, cancellationToken).ConfigureAwait(false);

        // Checked after the rate limiter's wait, right before the call: the call's worst case must end inside the lease.
        if (_time.GetUtcNow() + _maxCallDuration >= leaseExpiresAt())
        {
            return (null, "lease too short for another call");
        }

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

    /// <summary>
    /// Sends up to 100 reports as one v2 stream request (one rate-limit permit), or returns a null kind without calling
    /// Stripe when the lease would not outlast the call. One outcome for the whole request: Stripe accepts or refuses it
    /// as a unit, and judges each event only afterwards (thin error-report events name the ones it rejected).
    /// </summary>
    private async Task<(SendOutcomeKind? Kind, string Message)> SendBatchAsync(IReadOnlyList<LeasedReport> reports, Func<DateTimeOffset> leaseExpiresAt, CancellationToken cancellationToken)
    {
        using var permit = await _rateLimiter.AcquireAsync(1, cancellationToken).ConfigureAwait(false);
        if (_time.GetUtcNow() + _maxCallDuration >= leaseExpiresAt())
        {
            return (null, "lease too short for another call");
        }

        var started = Stopwatch.GetTimestamp();
        try
        {
            await _streamSender.SendAsync(reports, cancellationToken).ConfigureAwait(false);
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

    /// <summary>
    /// Sends the cancels corrections owe Stripe, one at a time (they are rare). Each is leased first, so two
    /// flushers never send one at once; its first Idempotency-Key is the correction id, and cancelling an
    /// identifier twice changes nothing on Stripe, so a crash between the call and its mark is harmless.
    /// </summary>
    private async Task SendCorrectionsAsync(Guid? userId, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var owner = FlusherIdentity.NewOwner();
        var due = await _corrections.LeaseDueAsync(now, _options.SendBatchSize, userId, owner, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false);
        foreach (var correction in due)
        {
            var key = correction.Attempts == 0 ? correction.Id.ToString() : $"{correction.Id}-r{correction.Attempts}";
            SendOutcomeKind kind;
            string message;
            using (await _rateLimiter.AcquireAsync(1, cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    await _sender.CancelAsync(correction.Meter, correction.ReportId.ToString(), key, cancellationToken).ConfigureAwait(false);
                    (kind, message) = (SendOutcomeKind.Delivered, "ok");
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
                {
                    (kind, message) = StripeErrorClassifier.Classify(ex);
                }
            }

            now = _time.GetUtcNow();
            switch (kind)
            {
                case SendOutcomeKind.Delivered:
                    await _corrections.CompleteAsync(correction.Id, _countMeters.Contains(correction.Meter), now, cancellationToken).ConfigureAwait(false);
                    break;
                case SendOutcomeKind.Dead:
                    // Too late to cancel (the flusher was down past Stripe's 24 h): a sum meter takes a negative event instead.
                    if (_countMeters.Contains(correction.Meter)
                        || !await _corrections.CompensateAsync(correction.Id, owner, now, now - UsageCorrections.CompensationWindow, message, cancellationToken).ConfigureAwait(false))
                    {
                        LogCorrectionFailed(correction.Id, correction.ReportId, message);
                        await _corrections.MarkFailedAsync(correction.Id, owner, permanent: true, now, message, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                default:
                    LogCorrectionRetry(correction.Id, message);
                    await _corrections.MarkFailedAsync(correction.Id, owner, permanent: false, now + Backoff(correction.Attempts + 1), message, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        // Exponential with "equal jitter": half fixed, half random, capped.
        var exp = Math.Min(_options.RetryMaxDelay.TotalMilliseconds, _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30)));
        return TimeSpan.FromMilliseconds((exp / 2) + (RandomNumberGenerator.GetInt32(1000) / 1000.0 * exp / 2));
    }

    public void Dispose()
    {
        _rateLimiter.Dispose();
        _checkGate.Dispose();
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "{Count} reports hold events older than Stripe's window; marked dead, never sent")]
    private partial void LogTooOld(int count);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Report {ReportId} is dead: {Reason}")]
    private partial void LogDead(Guid reportId, string reason);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Report {ReportId} attempt {Attempt} failed, will retry: {Reason}")]
    private partial void LogRetry(Guid reportId, int attempt, string reason);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Critical, Message = "Stripe refused UsageBilling's credentials; flushing stopped until the key is fixed: {Reason}")]
    private partial void LogConfigurationError(string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Critical, Message = "Flushing refused: {Reason}")]
    private partial void LogMeterMismatch(string reason);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "Meter '{Meter}' is configured but Stripe has no active meter with that event name; its usage is sent and Stripe reports it asynchronously (run 'usagebilling setup')")]
    private partial void LogMeterMissing(string meter);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Could not read Stripe's meters to check the configuration; will check again next cycle: {Reason}")]
    private partial void LogMeterCheckSkipped(string reason);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Information, Message = "{Keys} due customer·meter keys are held by another flusher; this flusher has nothing else it can lease")]
    private partial void LogHeldElsewhere(int keys);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Lease lost, the round sends nothing more: {Reason}")]
    private partial void LogLeaseLost(string reason);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Information, Message = "{Lanes} lanes stopped because the lease could not outlast another call; their reports are released and leased again at once")]
    private partial void LogStoppedForLease(int lanes);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Error, Message = "Correction {CorrectionId}: Stripe refused to cancel report {ReportId}; the correction failed: {Reason}")]
    private partial void LogCorrectionFailed(Guid correctionId, Guid reportId, string reason);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Warning, Message = "Correction {CorrectionId}: cancel failed, will retry: {Reason}")]
    private partial void LogCorrectionRetry(Guid correctionId, string reason);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Warning, Message = "Writing marks failed (attempt {Attempt}), retrying: {Reason}")]
    private partial void LogMarkRetry(int attempt, string reason);
}
