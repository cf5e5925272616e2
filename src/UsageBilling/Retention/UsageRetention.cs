using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// The retention settings, read without the rest of <see cref="UsageBillingOptions"/>' validation: pruning needs no
/// meter configuration, so <c>usagebilling db prune</c> runs with a connection string alone. Wrong retention settings
/// still throw <see cref="OptionsValidationException"/>.
/// </summary>
internal sealed class RetentionSettings(IEnumerable<IConfigureOptions<UsageBillingOptions>> setups, IEnumerable<IPostConfigureOptions<UsageBillingOptions>> postConfigures)
{
    private readonly Lazy<RetentionOptions> _value = new(() =>
        new OptionsFactory<UsageBillingOptions>(setups, postConfigures, [new RetentionValidator()]).Create(Options.DefaultName).Retention);

    /// <summary>The configured retention settings (validated on first read).</summary>
    public RetentionOptions Value => _value.Value;

    private sealed class RetentionValidator : IValidateOptions<UsageBillingOptions>
    {
        public ValidateOptionsResult Validate(string? name, UsageBillingOptions options)
        {
            var errors = new List<string>();
            UsageBillingOptionsValidator.ValidateRetention(options.Retention, errors);
            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }
    }
}

/// <summary>Checks the window and hands the cutoff to the store.</summary>
internal sealed class UsageRetention(IUsageRetentionStore store, RetentionSettings settings, TimeProvider time) : IUsageRetention
{
    public Task<UsagePruneResult> PruneAsync(TimeSpan keep, CancellationToken cancellationToken = default)
    {
        if (keep < IUsageRetention.MinimumKeep)
        {
            throw new ArgumentOutOfRangeException(nameof(keep), keep, $"Retention must keep at least {IUsageRetention.MinimumKeep.TotalDays:0} days (Stripe's meter-event window: younger events can still be recorded, sent or corrected); got {Describe(keep)}.");
        }

        return store.PruneAsync(time.GetUtcNow() - keep, settings.Value.BatchSize, cancellationToken);
    }

    public Task<IReadOnlyList<string>> EnsurePartitionsAsync(CancellationToken cancellationToken = default) =>
        store.EnsurePartitionsAsync(time.GetUtcNow(), cancellationToken);

    // Set once a fold of the whole history completed in this process: later folds look at the days the recorder can
    // still write into (and a little more), since an older day that could not be folded then never can be.
    private volatile bool _foldedAll;

    public async Task<UsageFoldResult> FoldHoursAsync(CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var result = await store.FoldHoursAsync(now, _foldedAll ? now - UsageRules.MaxAge - TimeSpan.FromDays(2) : null, settings.Value.BatchSize, cancellationToken).ConfigureAwait(false);
        _foldedAll = true;
        return result;
    }

    internal static string Describe(TimeSpan keep) =>
        keep.Ticks % TimeSpan.TicksPerDay == 0 ? $"{keep.TotalDays:0} days" : keep.ToString();
}

/// <summary>At start and every <see cref="RetentionOptions.Interval"/>: creates the monthly partitions ahead, folds the closed sparse days' hours, then prunes when <see cref="RetentionOptions.Keep"/> is set; one failing run is logged, the loop goes on.</summary>
internal sealed partial class UsageRetentionBackgroundService(
    IUsageRetention retention,
    RetentionSettings settings,
    TimeProvider time,
    ILogger<UsageRetentionBackgroundService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Runs without Keep too: the monthly partitions must exist ahead whether anything is pruned or not.
        var keep = settings.Value.Keep;
        await Task.Yield();
        using var timer = new PeriodicTimer(settings.Value.Interval, time);
        do
        {
            try
            {
                var created = await retention.EnsurePartitionsAsync(stoppingToken).ConfigureAwait(false);
                if (created.Count > 0)
                {
                    LogPartitions(string.Join(", ", created));
                }

                var folded = await retention.FoldHoursAsync(stoppingToken).ConfigureAwait(false);
                if (folded.DaysFolded > 0)
                {
                    LogFolded(folded.DaysFolded, folded.HourlyRowsDeleted);
                }

                if (keep is { } window)
                {
                    var result = await retention.PruneAsync(window, stoppingToken).ConfigureAwait(false);
                    if (result.EventsDeleted > 0 || result.HourlyRowsFolded > 0)
                    {
                        LogPruned(result.EventsDeleted, result.HourlyRowsFolded, result.PartitionsDropped, result.Cutoff);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(EventId = 2401, Level = LogLevel.Information, Message = "Retention: {Events} acknowledged events ({Partitions} monthly partitions dropped whole) and {Hourly} hourly rollup rows from before {Cutoff:O} removed")]
    private partial void LogPruned(long events, long hourly, int partitions, DateTimeOffset cutoff);

    [LoggerMessage(EventId = 2403, Level = LogLevel.Information, Message = "Retention: created the usage_events partitions {Partitions}")]
    private partial void LogPartitions(string partitions);

    [LoggerMessage(EventId = 2404, Level = LogLevel.Information, Message = "Retention: folded the hours of {Days} closed day(s) into the daily rollup ({Hourly} hourly rows deleted)")]
    private partial void LogFolded(long days, long hourly);

    [LoggerMessage(EventId = 2402, Level = LogLevel.Error, Message = "A retention run failed; the next tick retries")]
    private partial void LogFailed(Exception exception);
}
