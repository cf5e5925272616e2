using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Reads customers' usage from the local database: fast, no Stripe call.</summary>
public interface IUsageSummaryService
{
    /// <summary>The user's usage per configured meter in its current billing period, with its daily usage: everything the usage page shows, in one read.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The summary.</returns>
    Task<UsageSummary> GetCurrentPeriodAsync(Guid userId, CancellationToken cancellationToken = default);

    /// <summary>The user's daily usage of one meter in its current billing period, every day of the period up to today included (zero days too).</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>Days in order.</returns>
    Task<IReadOnlyList<DailyUsage>> GetDailyUsageAsync(Guid userId, string meter, CancellationToken cancellationToken = default);
}
