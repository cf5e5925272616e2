
namespace UsageBilling.Storage;

/// <summary>
/// The spend-control side of the store: accounts' own caps and thresholds, and the alert outbox.
/// Enforcement itself happens inside <see cref="IUsageStore.InsertEventsAsync"/>.
/// </summary>
internal interface ISpendControlStore
{
    /// <summary>The account's billing state and settings.</summary>
    Task<AccountLimits> GetAccountLimitsAsync(Guid userId, CancellationToken cancellationToken);

    /// <summary>Replaces the account's settings for one meter (all fields null deletes them).</summary>
    Task SetAccountMeterSettingsAsync(Guid userId, string meter, AccountMeterSettings settings, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>The account's alerts created at or after <paramref name="since"/>, newest first.</summary>
    Task<IReadOnlyList<UsageAlert>> GetAlertsAsync(Guid userId, DateTimeOffset since, CancellationToken cancellationToken);

    /// <summary>Leases up to <paramref name="max"/> undelivered alerts that are due and not leased by a live dispatcher.</summary>
    Task<IReadOnlyList<UsageAlert>> ClaimDueAlertsAsync(string owner, DateTimeOffset now, TimeSpan lease, int max, CancellationToken cancellationToken);

    /// <summary>Marks an alert delivered (only while <paramref name="owner"/> holds its lease or nobody does).</summary>
    Task MarkAlertDeliveredAsync(Guid alertId, string owner, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Records a failed delivery and when to try again; releases the lease.</summary>
    Task MarkAlertFailedAsync(Guid alertId, string owner, string error, DateTimeOffset nextAttemptAt, CancellationToken cancellationToken);
}
