using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Checks the window and hands the cutoff to the store.</summary>
internal sealed class UsageRetention(IUsageRetentionStore store, IOptions<UsageBillingOptions> options, TimeProvider time) : IUsageRetention
{
    public Task<UsagePruneResult> PruneAsync(TimeSpan keep, CancellationToken cancellationToken = default)
    {
        if (keep < IUsageRetention.MinimumKeep)
        {
            throw new ArgumentOutOfRangeException(nameof(keep), keep, $"Retention must keep at least {IUsageRetention.MinimumKeep.TotalDays:0} days (Stripe's meter-event window: younger events can still be recorded, sent or corrected); got {Describe(keep)}.");
        }

        return store.PruneAsync(time.GetUtcNow() - keep, options.Value.Retention.BatchSize, cancellationToken);
    }

    internal static string Describe(TimeSpan keep) =>
        keep.Ticks % TimeSpan.TicksPerDay == 0 ? $"{keep.TotalDays:0} days" : keep.ToString();
}

/// <summary>Prunes every <see cref="RetentionOptions.Interval"/> when <see cref="RetentionOptions.Keep"/> is set; one failing run is logged, the loop goes on.</summary>
internal sealed partial class UsageRetentionBackgroundService(
    IUsageRetention retention,
    IOptions<UsageBillingOptions> options,
    TimeProvider time,
    ILogger<UsageRetentionBackgroundService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.Value.Retention.Keep is not { } keep)
        {
            return;
        }

        await Task.Yield();
        using var timer = new PeriodicTimer(options.Value.Retention.Interval, time);
        do
        {
            try
            {
                var result = await retention.PruneAsync(keep, stoppingToken).ConfigureAwait(false);
                if (result.EventsDeleted > 0 || result.HourlyRowsFolded > 0)
                {
                    LogPruned(result.EventsDeleted, result.HourlyRowsFolded, result.Cutoff);
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

    [LoggerMessage(EventId = 2401, Level = LogLevel.Information, Message = "Retention: {Events} acknowledged events and {Hourly} hourly rollup rows from before {Cutoff:O} removed")]
    private partial void LogPruned(long events, long hourly, DateTimeOffset cutoff);

    [LoggerMessage(EventId = 2402, Level = LogLevel.Error, Message = "A retention run failed; the next tick retries")]
    private partial void LogFailed(Exception exception);
}
