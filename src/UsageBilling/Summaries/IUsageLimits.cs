
namespace UsageBilling;

/// <summary>
/// Spend control for UIs and account settings: an advisory check before an action, the account's own
/// caps and alert thresholds, and its recent alerts. <see cref="IUsageRecorder"/> stays the
/// authority: it enforces the same limits atomically when it records.
/// </summary>
public interface IUsageLimits
{
    /// <summary>
    /// Whether <paramref name="quantity"/> more units of <paramref name="meter"/> would fit the account's
    /// limits now. Advisory: a concurrent caller may take the room before the real record.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="quantity">The units the action would record. Default 1.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The check.</returns>
    Task<UsageCheck> CheckAsync(Guid userId, string meter, long quantity = 1, CancellationToken cancellationToken = default);

    /// <summary>The account's own settings for a meter and the plan's limits they must stay under.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The settings.</returns>
    Task<AccountLimitSettings> GetSettingsAsync(Guid userId, string meter, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sets the account's own caps for a meter per period ("stop me at $50"): each at most the plan's
    /// limit of the same kind; <see langword="null"/> removes a cap. Takes effect on the next record.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="spendCap">The most the meter may cost per period, in currency units, or <see langword="null"/>.</param>
    /// <param name="quantityCap">The most units per period, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task that completes when the caps are stored.</returns>
    /// <exception cref="InvalidSpendCapException">A cap is negative or above the plan's limit.</exception>
    Task SetCapsAsync(Guid userId, string meter, decimal? spendCap, long? quantityCap, CancellationToken cancellationToken = default);

    /// <summary>
    /// The account's own spend cap across all its meters ("stop me at $50 this period, whatever I
    /// use") and the most the plan lets an account spend on usage, which the cap must stay under.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The cap and its ceiling.</returns>
    Task<AccountSpendCapSettings> GetAccountSpendCapAsync(Guid userId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sets the account's spend cap across all its meters per period: the usage cost of every priced
    /// meter of the plan is summed, and an event that would take the sum over the cap is refused with
    /// <see cref="UsageLimitKind.AccountSpendCap"/>. At most the plan's ceiling (when every meter of the
    /// plan is bounded); <see langword="null"/> removes the cap. Takes effect on the next record.
    /// Per-meter caps (<see cref="SetCapsAsync"/>) still apply under it.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="spendCap">The most the account's usage may cost per period, in currency units, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task that completes when the cap is stored.</returns>
    /// <exception cref="InvalidSpendCapException">The cap is negative or above the plan's ceiling.</exception>
    /// <exception cref="UnknownUserException">The user does not exist.</exception>
    Task SetAccountSpendCapAsync(Guid userId, decimal? spendCap, CancellationToken cancellationToken = default);

    /// <summary>Sets the account's alert thresholds for a meter, replacing the configured defaults; <see langword="null"/> restores the defaults.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <param name="thresholds">The thresholds (each value above zero), or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task that completes when the thresholds are stored.</returns>
    Task SetAlertThresholdsAsync(Guid userId, string meter, IReadOnlyList<AlertThreshold>? thresholds, CancellationToken cancellationToken = default);

    /// <summary>The account's alerts of its current billing periods, newest first.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The alerts.</returns>
    Task<IReadOnlyList<UsageAlert>> GetRecentAlertsAsync(Guid userId, CancellationToken cancellationToken = default);
}

/// <summary>The answer of <see cref="IUsageLimits.CheckAsync"/>.</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="Used">The period's usage so far, in the meter's aggregated unit.</param>
/// <param name="Requested">The units asked about.</param>
/// <param name="Remaining">The units still allowed this period, or <see langword="null"/> without a limit.</param>
/// <param name="WouldExceed">Whether the request would be refused now.</param>
/// <param name="Kind">The limit that would refuse it (or that bounds <paramref name="Remaining"/>), if any.</param>
/// <param name="Limit">That limit, in units or currency units.</param>
/// <param name="PeriodEnd">When the period ends and limits reset.</param>
/// <param name="Message">Why it would be refused, for the UI.</param>
public sealed record UsageCheck(string Meter, long Used, long Requested, long? Remaining, bool WouldExceed, UsageLimitKind? Kind, decimal? Limit, DateTimeOffset PeriodEnd, string? Message);

/// <summary>The account's own settings for one meter, and the plan's limits they are bounded by.</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="SpendCap">The account's spend cap per period, if set.</param>
/// <param name="QuantityCap">The account's quantity cap per period, if set.</param>
/// <param name="Alerts">The thresholds in force: the account's own, else the configured defaults.</param>
/// <param name="AlertsAreCustom">Whether <paramref name="Alerts"/> are the account's own.</param>
/// <param name="PlanSpendLimit">The plan's spend limit, if any.</param>
/// <param name="PlanHardLimit">The plan's hard limit, if any.</param>
/// <param name="Currency">The plan's currency.</param>
public sealed record AccountLimitSettings(string Meter, decimal? SpendCap, long? QuantityCap, IReadOnlyList<AlertThreshold> Alerts, bool AlertsAreCustom, decimal? PlanSpendLimit, long? PlanHardLimit, string Currency);

/// <summary>The account's own spend cap across all its meters, and what bounds it.</summary>
/// <param name="SpendCap">The cap per period, in currency units, if set.</param>
/// <param name="PlanCeiling">
/// The most the plan lets an account's usage cost per period (the sum of every meter's cost at its
/// limit), or <see langword="null"/> when some meter of the plan has no limit (or there is no plan).
/// </param>
/// <param name="Currency">The plan's currency.</param>
public sealed record AccountSpendCapSettings(decimal? SpendCap, decimal? PlanCeiling, string Currency);

/// <summary>The limit in force for a meter in the current period, as the usage page shows it.</summary>
/// <param name="Kind">Which limit bounds the period (the lowest).</param>
/// <param name="MaxUnits">The most units the period may reach (spend limits converted through the price tiers).</param>
/// <param name="SpendLimit">The spend limit in force, if any, in currency units.</param>
/// <param name="Reached">Whether no further unit fits this period.</param>
/// <param name="ResetsAt">When the period ends and the limit resets.</param>
public sealed record UsageLimitState(UsageLimitKind Kind, long MaxUnits, decimal? SpendLimit, bool Reached, DateTimeOffset ResetsAt);
