
namespace UsageBilling;

/// <summary>
/// A usage alert: an account's usage of a meter reached a threshold in a billing period. Written once
/// per account·meter·period·threshold, in the transaction that recorded the usage crossing it.
/// </summary>
/// <param name="Id">The alert id; a redelivery carries the same id, so handlers can deduplicate on it.</param>
/// <param name="UserId">The app's user id.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="PeriodStart">Inclusive start of the billing period.</param>
/// <param name="PeriodEnd">Exclusive end of the billing period.</param>
/// <param name="Threshold">The threshold that was reached.</param>
/// <param name="Used">The period's usage (in the meter's aggregated unit) right after the crossing.</param>
/// <param name="Amount">The period's projected cost of the meter right after the crossing, in currency units.</param>
/// <param name="CreatedAt">When the crossing was recorded.</param>
/// <param name="Attempts">Delivery attempts made before this one.</param>
/// <param name="DeliveredAt">When every handler accepted it, if it has been delivered.</param>
public sealed record UsageAlert(
    Guid Id,
    Guid UserId,
    string Meter,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    AlertThreshold Threshold,
    long Used,
    decimal Amount,
    DateTimeOffset CreatedAt,
    int Attempts,
    DateTimeOffset? DeliveredAt);

/// <summary>
/// Receives usage alerts (register implementations in DI). Delivery is at least once: after a crash
/// or a failed handler the same alert (same <see cref="UsageAlert.Id"/>) may arrive again, so make
/// the handler idempotent. A thrown exception schedules a retry with backoff for every handler.
/// </summary>
public interface IUsageAlertHandler
{
    /// <summary>Handles one alert.</summary>
    /// <param name="alert">The alert.</param>
    /// <param name="cancellationToken">Stops the handler when the app shuts down.</param>
    /// <returns>A task that completes when the alert is handled.</returns>
    Task HandleAsync(UsageAlert alert, CancellationToken cancellationToken);
}

/// <summary>Delivers alerts from the outbox to the <see cref="IUsageAlertHandler"/> implementations.</summary>
public interface IUsageAlertDispatcher
{
    /// <summary>Delivers the alerts that are due now (one round, up to the configured batch size).</summary>
    /// <param name="cancellationToken">Stops the round.</param>
    /// <returns>How many alerts were delivered to every handler.</returns>
    Task<int> DeliverOnceAsync(CancellationToken cancellationToken = default);
}
