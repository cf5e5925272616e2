using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Claims due alerts with a lease, calls every handler, marks them delivered or schedules a retry.</summary>
internal sealed partial class UsageAlertDispatcher(
    ISpendControlStore store,
    IEnumerable<IUsageAlertHandler> handlers,
    IOptions<UsageBillingOptions> options,
    TimeProvider time,
    ILogger<UsageAlertDispatcher> logger) : IUsageAlertDispatcher
{
    private readonly IUsageAlertHandler[] _handlers = [.. handlers];
    private readonly string _owner = $"{Environment.ProcessId}:{Guid.NewGuid():N}";
    private long _claims;

    public bool HasHandlers => _handlers.Length > 0;

    public async Task<int> DeliverOnceAsync(CancellationToken cancellationToken = default)
    {
        if (_handlers.Length == 0)
        {
            return 0;
        }

        // Every call leases under its own owner: two calls at once in one process (the background loop
        // and a caller of DeliverOnceAsync) must not both take the rows one of them leased.
        var owner = Truncate($"{Environment.MachineName}:{_owner}:{Interlocked.Increment(ref _claims)}", 100);
        var delivery = options.Value.Limits.Delivery;
        var alerts = await store.ClaimDueAlertsAsync(owner, time.GetUtcNow(), delivery.LeaseDuration, delivery.BatchSize, cancellationToken).ConfigureAwait(false);
        var delivered = 0;
        foreach (var alert in alerts)
        {
            try
            {
                foreach (var handler in _handlers)
                {
                    await handler.HandleAsync(alert, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                var delay = TimeSpan.FromTicks(Math.Min(delivery.RetryMaxDelay.Ticks, delivery.RetryBaseDelay.Ticks * (1L << Math.Min(20, alert.Attempts))));
                LogHandlerFailed(ex, alert.Id, alert.Attempts + 1, delay);
                var message = ex.Message.Length > 2000 ? ex.Message[..2000] : ex.Message;
                await store.MarkAlertFailedAsync(alert.Id, owner, message, time.GetUtcNow() + delay, CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            await store.MarkAlertDeliveredAsync(alert.Id, owner, time.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
            delivered++;
        }

        return delivered;
    }

    private static string Truncate(string value, int length) => value.Length > length ? value[^length..] : value;

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Usage alert {AlertId} failed delivery attempt {Attempt}; retrying in {Delay}")]
    private partial void LogHandlerFailed(Exception exception, Guid alertId, int attempt, TimeSpan delay);
}

/// <summary>Runs <see cref="IUsageAlertDispatcher.DeliverOnceAsync"/> every poll interval when handlers are registered.</summary>
internal sealed partial class UsageAlertBackgroundService(
    UsageAlertDispatcher dispatcher,
    IOptions<UsageBillingOptions> options,
    TimeProvider time,
    ILogger<UsageAlertBackgroundService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delivery = options.Value.Limits.Delivery;
        if (!delivery.Enabled || !dispatcher.HasHandlers || !options.Value.Limits.Enforce)
        {
            return;
        }

        await Task.Yield();
        using var timer = new PeriodicTimer(delivery.PollInterval, time);
        do
        {
            try
            {
                while (await dispatcher.DeliverOnceAsync(stoppingToken).ConfigureAwait(false) >= delivery.BatchSize)
                {
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogRoundFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(EventId = 3002, Level = LogLevel.Error, Message = "An alert delivery round failed; the next tick retries")]
    private partial void LogRoundFailed(Exception exception);
}
