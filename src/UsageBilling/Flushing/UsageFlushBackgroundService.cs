using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Runs <see cref="IUsageFlusher.FlushOnceAsync(CancellationToken)"/> every <see cref="FlushOptions.Interval"/>; one failing cycle is logged and counted, the loop goes on.</summary>
internal sealed partial class UsageFlushBackgroundService(
    IUsageFlusher flusher,
    IOptions<FlushOptions> options,
    TimeProvider time,
    FlushState state,
    ILogger<UsageFlushBackgroundService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.Enabled)
        {
            return;
        }

        await Task.Yield();
        using var timer = new PeriodicTimer(options.Value.Interval, time);
        do
        {
            try
            {
                var result = await flusher.FlushOnceAsync(stoppingToken).ConfigureAwait(false);
                if (result.EventsClaimed > 0 || result.ReportsSent > 0 || result.ReportsDead > 0)
                {
                    LogCycle(result.EventsClaimed, result.ReportsSent, result.ReportsRetried, result.ReportsDead);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                state.CycleFailed();
                LogCycleFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Flush: {Claimed} events claimed, {Sent} reports sent, {Retried} retried, {Dead} dead")]
    private partial void LogCycle(int claimed, int sent, int retried, int dead);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Error, Message = "A flush cycle failed; the next tick retries")]
    private partial void LogCycleFailed(Exception exception);
}
