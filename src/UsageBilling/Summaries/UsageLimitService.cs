using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Advisory checks and account settings over the same rules <see cref="UsageGuard"/> enforces when recording.</summary>
internal sealed class UsageLimitService(IUsageStore store, ISpendControlStore spend, IOptions<UsageBillingOptions> options, TimeProvider time) : IUsageLimits
{
    private readonly UsageBillingOptions _options = options.Value;
    private readonly UsageGuard _guard = new(options.Value);

    public async Task<UsageCheck> CheckAsync(Guid userId, string meter, long quantity = 1, CancellationToken cancellationToken = default)
    {
        EnsureMeter(meter);
        if (quantity < 1)
        {
            throw new InvalidQuantityException($"Quantity must be at least 1, was {quantity}.");
        }

        var now = time.GetUtcNow();
        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var rule = _guard.RuleFor(userId, meter, now, account);
        long used = 0;
        foreach (var row in await store.GetUsageByDayAsync(userId, rule.Period.Start, rule.Period.End, cancellationToken).ConfigureAwait(false))
        {
            if (row.Meter == meter)
            {
                used += rule.CountsEvents ? row.Count : row.Total;
            }
        }

        var units = rule.CountsEvents ? 1 : quantity;
        if (!_options.Limits.Enforce)
        {
            return new UsageCheck(meter, used, units, null, false, null, null, rule.Period.End, null);
        }

        var refusal = rule.Refusal(used, units);
        var state = UsageSummaryService.LimitStateOf(rule, used);
        long? remaining = state is null ? null : Math.Max(0, state.MaxUnits - used);
        var kind = state?.Kind;
        var limit = state is null ? (decimal?)null : state.Kind is UsageLimitKind.SpendLimit or UsageLimitKind.CustomerSpendCap ? state.SpendLimit : state.MaxUnits;
        if (rule.AccountCap is { } cap)
        {
            // Every priced meter of the plan counts towards the account's cap: one read per distinct period.
            var usage = new Dictionary<PeriodKey, long> { [rule.Key] = used };
            foreach (var period in cap.Members.Where(m => m.Key != rule.Key).GroupBy(m => m.Period))
            {
                var rows = await store.GetUsageByDayAsync(userId, period.Key.Start, period.Key.End, cancellationToken).ConfigureAwait(false);
                foreach (var member in period)
                {
                    usage[member.Key] = rows.Where(r => r.Meter == member.Key.Meter).Sum(r => member.CountsEvents ? r.Count : r.Total);
                }
            }

            long UsedOf(MeterRule m) => usage.GetValueOrDefault(m.Key);
            refusal ??= rule.AccountCapRefusal(UsedOf, units);
            if (rule.RoomUnderAccountCap(UsedOf) is { } room && (remaining is null || room < remaining))
            {
                remaining = room;
                kind = UsageLimitKind.AccountSpendCap;
                limit = cap.Limit;
            }
        }

        return new UsageCheck(
            meter,
            used,
            units,
            remaining,
            refusal is not null,
            refusal?.Kind ?? kind,
            refusal?.Limit ?? limit,
            rule.Period.End,
            refusal?.Message);
    }

    public async Task<AccountSpendCapSettings> GetAccountSpendCapAsync(Guid userId, CancellationToken cancellationToken = default)
    {
        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var planId = account.State?.PlanId ?? _options.DefaultPlan;
        var currency = planId is not null && _options.Plans.TryGetValue(planId, out var plan) ? plan.Currency : "usd";
        return new AccountSpendCapSettings(account.AccountSpendCap, _guard.PlanSpendCeiling(planId), currency);
    }

    public async Task SetAccountSpendCapAsync(Guid userId, decimal? spendCap, CancellationToken cancellationToken = default)
    {
        if (spendCap is < 0)
        {
            throw new InvalidSpendCapException($"A spend cap must not be negative; was {spendCap}.");
        }

        var current = await GetAccountSpendCapAsync(userId, cancellationToken).ConfigureAwait(false);
        if (spendCap is { } s && current.PlanCeiling is { } ceiling && s > ceiling)
        {
            throw new InvalidSpendCapException($"The spend cap {s} {current.Currency.ToUpperInvariant()} is above the most this plan's usage can cost per period, {ceiling} {current.Currency.ToUpperInvariant()}; choose at most that.");
        }

        await spend.SetAccountMeterSettingsAsync(userId, AccountMeterSettings.AllMeters, new AccountMeterSettings(spendCap, null, null), time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
    }

    public async Task<AccountLimitSettings> GetSettingsAsync(Guid userId, string meter, CancellationToken cancellationToken = default)
    {
        EnsureMeter(meter);
        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var settings = account.Settings.GetValueOrDefault(meter);
        var price = PriceOf(account, meter, out var currency);
        var alerts = settings?.Alerts ?? [.. _options.Limits.Alerts.Where(a => a.Meter is null || a.Meter == meter)];
        return new AccountLimitSettings(meter, settings?.SpendCap, settings?.QuantityCap, alerts, settings?.Alerts is not null, price?.SpendLimit, price?.HardLimit, currency);
    }

    public async Task SetCapsAsync(Guid userId, string meter, decimal? spendCap, long? quantityCap, CancellationToken cancellationToken = default)
    {
        EnsureMeter(meter);
        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var price = PriceOf(account, meter, out var currency);
        if (spendCap is < 0)
        {
            throw new InvalidSpendCapException($"A spend cap must not be negative; was {spendCap}.");
        }

        if (spendCap is { } s && price?.SpendLimit is { } planSpend && s > planSpend)
        {
            throw new InvalidSpendCapException($"The spend cap {s} {currency.ToUpperInvariant()} is above the plan's spend limit of {planSpend} {currency.ToUpperInvariant()}; choose at most that.");
        }

        if (quantityCap is < 0)
        {
            throw new InvalidSpendCapException($"A quantity cap must not be negative; was {quantityCap}.");
        }

        if (quantityCap is { } q && price?.HardLimit is { } hard && q > hard)
        {
            throw new InvalidSpendCapException($"The quantity cap {q} is above the plan's limit of {hard}; choose at most that.");
        }

        var current = account.Settings.GetValueOrDefault(meter);
        await spend.SetAccountMeterSettingsAsync(userId, meter, new AccountMeterSettings(spendCap, quantityCap, current?.Alerts), time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
    }

    public async Task SetAlertThresholdsAsync(Guid userId, string meter, IReadOnlyList<AlertThreshold>? thresholds, CancellationToken cancellationToken = default)
    {
        EnsureMeter(meter);
        if (thresholds is not null)
        {
            foreach (var t in thresholds)
            {
                if (!Enum.IsDefined(t.Kind) || t.Value <= 0)
                {
                    throw new ArgumentException($"Alert threshold {t.Kind} {t.Value} is invalid: the kind must be defined and the value above zero.", nameof(thresholds));
                }
            }

            if (thresholds.Count > 20)
            {
                throw new ArgumentException("At most 20 alert thresholds per meter.", nameof(thresholds));
            }
        }

        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var current = account.Settings.GetValueOrDefault(meter);
        await spend.SetAccountMeterSettingsAsync(userId, meter, new AccountMeterSettings(current?.SpendCap, current?.QuantityCap, thresholds), time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<UsageAlert>> GetRecentAlertsAsync(Guid userId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var account = await spend.GetAccountLimitsAsync(userId, cancellationToken).ConfigureAwait(false);
        var since = _options.Meters.Keys.Select(m => _guard.RuleFor(userId, m, now, account).Period.Start).DefaultIfEmpty(now).Min();
        var alerts = await spend.GetAlertsAsync(userId, since, cancellationToken).ConfigureAwait(false);
        return [.. alerts.Where(a => a.PeriodEnd > now)];
    }

    private PlanMeterPrice? PriceOf(AccountLimits account, string meter, out string currency)
    {
        var planId = account.State?.PlanId ?? _options.DefaultPlan;
        currency = "usd";
        if (planId is null || !_options.Plans.TryGetValue(planId, out var plan))
        {
            return null;
        }

        currency = plan.Currency;
        return plan.Meters.GetValueOrDefault(meter);
    }

    private void EnsureMeter(string meter)
    {
        if (string.IsNullOrEmpty(meter) || !_options.Meters.ContainsKey(meter))
        {
            throw new UnknownMeterException($"Unknown meter '{meter}'. Configured meters: {string.Join(", ", _options.Meters.Keys.Order(StringComparer.Ordinal))}.");
        }
    }
}
