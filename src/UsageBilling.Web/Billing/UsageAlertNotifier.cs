
namespace UsageBilling.Web.Billing;

/// <summary>
/// The sample's alert handler: logs each alert (the usage page shows them from the outbox). Delivery is
/// at least once, so a redelivery after a crash logs the same alert id again; a real notifier (e-mail,
/// webhook) would keep the ids it has sent.
/// </summary>
internal sealed partial class UsageAlertNotifier(ILogger<UsageAlertNotifier> logger) : IUsageAlertHandler
{
    public Task HandleAsync(UsageAlert alert, CancellationToken cancellationToken)
    {
        LogAlert(alert.Id, alert.UserId, alert.Meter, alert.Threshold.Key, alert.Used, alert.Amount);
        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 5101, Level = LogLevel.Information, Message = "Usage alert {AlertId}: user {UserId} reached {Threshold} on {Meter} ({Used} used, {Amount} so far)")]
    private partial void LogAlert(Guid alertId, Guid userId, string meter, string threshold, long used, decimal amount);
}
