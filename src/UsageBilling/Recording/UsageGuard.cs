using System.Globalization;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>One account·meter·billing period: the unit limits are enforced and alerts fire in.</summary>
/// <param name="UserId">The app's user id.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="PeriodStart">Inclusive start of the billing period.</param>
internal readonly record struct PeriodKey(Guid UserId, string Meter, DateTimeOffset PeriodStart)
{
    /// <summary>The one order every writer locks period totals in, so concurrent batches never deadlock.</summary>
    public static readonly IComparer<PeriodKey> LockOrder = Comparer<PeriodKey>.Create(static (a, b) =>
    {
        var c = a.UserId.CompareTo(b.UserId);
        if (c != 0)
        {
            return c;
        }

        c = string.CompareOrdinal(a.Meter, b.Meter);
        return c != 0 ? c : a.PeriodStart.UtcTicks.CompareTo(b.PeriodStart.UtcTicks);
    });
}

/// <summary>A period's recorded usage: the sum of quantities and the number of events.</summary>
internal readonly record struct PeriodTotals(long Quantity, long Count)
{
    public PeriodTotals Add(NewUsageEvent e) => new(Quantity + e.Quantity, Count + 1);
}

/// <summary>What an account has set for one meter: its own caps and alert thresholds.</summary>
/// <param name="SpendCap">The account's spend cap per period, in currency units.</param>
/// <param name="QuantityCap">The account's quantity cap per period.</param>
/// <param name="Alerts">The account's thresholds, replacing the configured defaults; <see langword="null"/> when not set.</param>
internal sealed record AccountMeterSettings(decimal? SpendCap, long? QuantityCap, IReadOnlyList<AlertThreshold>? Alerts)
{
    /// <summary>
    /// The settings row that holds the account's cap across all its meters ("stop me at $50 this
    /// period"). Not a valid meter event name, so it never collides with one.
    /// </summary>
    public const string AllMeters = "*";

    /// <summary>Writes thresholds as stored: keys joined by <c>;</c>.</summary>
    public static string? FormatAlerts(IReadOnlyList<AlertThreshold>? alerts) =>
        alerts is null ? null : string.Join(';', alerts.Select(a => a.Key).Distinct(StringComparer.Ordinal));

    /// <summary>Reads thresholds as stored; unreadable keys are skipped.</summary>
    public static IReadOnlyList<AlertThreshold>? ParseAlerts(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var list = new List<AlertThreshold>();
        foreach (var part in text.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            if (AlertThreshold.TryParse(part, out var t))
            {
                list.Add(t);
            }
        }

        return list;
    }
}

/// <summary>Everything the guard needs about one account: its billing state and its own settings per meter.</summary>
/// <param name="State">The billing state, or <see langword="null"/> without a customer.</param>
/// <param name="Settings">The account's settings keyed by meter.</param>
internal sealed record AccountLimits(BillingState? State, IReadOnlyDictionary<string, AccountMeterSettings> Settings)
{
    /// <summary>The account's own spend cap across all its meters per period, if set.</summary>
    public decimal? AccountSpendCap => Settings.TryGetValue(AccountMeterSettings.AllMeters, out var all) ? all.SpendCap : null;
}

/// <summary>
/// The account's spend cap across its meters in one period: what each priced meter of the plan costs
/// is summed, so every period total of those meters is locked and read when any of them records.
/// </summary>
/// <param name="Limit">The cap, in currency units.</param>
/// <param name="Members">The rule of every priced meter of the plan in the period (the recorded one included).</param>
internal sealed record AccountSpendCapRule(decimal Limit, IReadOnlyList<MeterRule> Members);

/// <summary>An alert to write to the outbox in the recording transaction.</summary>
internal sealed record NewUsageAlert(
    Guid Id,
    Guid UserId,
    string Meter,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    AlertThreshold Threshold,
    long Used,
    decimal Amount,
    DateTimeOffset CreatedAt);

/// <summary>
/// The limits and alert thresholds of one account·meter·period, resolved from the plan, the account's
/// own caps and the no-plan policy. Quantities are in the meter's aggregated unit (events for a
/// count meter), exactly what the invoice counts.
/// </summary>
internal sealed record MeterRule
{
    public required PeriodKey Key { get; init; }

    public required BillingPeriod Period { get; init; }

    public required bool CountsEvents { get; init; }

    public string? PlanId { get; init; }

    public string Currency { get; init; } = "usd";

    public PriceSchedule? Schedule { get; init; }

    public long Included { get; init; }

    public long? QuantityLimit { get; init; }

    public UsageLimitKind QuantityLimitKind { get; init; }

    public decimal? SpendLimit { get; init; }

    public UsageLimitKind SpendLimitKind { get; init; }

    public IReadOnlyList<AlertThreshold> Alerts { get; init; } = [];

    public string Unit { get; init; } = "units";

    /// <summary>The account's cap across meters this rule's meter counts towards, if the account set one.</summary>
    public AccountSpendCapRule? AccountCap { get; init; }

    public long UsedOf(PeriodTotals totals) => CountsEvents ? totals.Count : totals.Quantity;

    public long UnitsOf(NewUsageEvent e) => CountsEvents ? 1 : e.Quantity;

    public decimal CostOf(long used) => Schedule?.CostOf(used) ?? 0m;

    /// <summary>The most units the period may reach, if a limit bounds it (the spend limit converted through the tiers).</summary>
    public long? MaxUnits()
    {
        long? max = QuantityLimit;
        if (SpendLimit is { } spend && Schedule is not null)
        {
            var bySpend = MaxUnitsWithin(spend, max ?? UsageRules.MaxQuantity);
            max = max is null ? bySpend : Math.Min(max.Value, bySpend);
        }

        return max;
    }

    /// <summary>Why the next <paramref name="units"/> would be refused after <paramref name="used"/>, or <see langword="null"/> when they fit.</summary>
    public UsageLimitExceededException? Refusal(long used, long units)
    {
        var next = used + units;
        if (QuantityLimit is { } limit && next > limit)
        {
            var what = QuantityLimitKind switch
            {
                UsageLimitKind.NoPlan => $"Usage of '{Key.Meter}' needs a plan: this account has none, so nothing can be recorded.",
                UsageLimitKind.NoPlanAllowance => $"This account has no plan and has used {Count(used)} of the {Count(limit)} free {Unit} of '{Key.Meter}' this period.",
                UsageLimitKind.CustomerQuantityCap => $"This account capped '{Key.Meter}' at {Count(limit)} {Unit} this period and has used {Count(used)}.",
                _ => $"The plan allows {Count(limit)} {Unit} of '{Key.Meter}' per period and {Count(used)} are used.",
            };
            return new UsageLimitExceededException(
                $"{what} {Count(units)} more would exceed it; the limit resets at {Period.End:O}.",
                Key.Meter,
                QuantityLimitKind,
                limit,
                used,
                units,
                Period.End);
        }

        if (SpendLimit is { } spend && Schedule is not null && CostOf(next) > spend)
        {
            var cost = CostOf(used);
            var who = SpendLimitKind == UsageLimitKind.CustomerSpendCap ? "This account capped its spend on" : "The plan limits spend on";
            return new UsageLimitExceededException(
                $"{who} '{Key.Meter}' at {Money(spend)} per period; {Money(cost)} is used and {Count(units)} more {Unit} would cost {Money(CostOf(next))}. The limit resets at {Period.End:O}.",
                Key.Meter,
                SpendLimitKind,
                spend,
                cost,
                units,
                Period.End);
        }

        return null;
    }

    /// <summary>
    /// Why the next <paramref name="units"/> would take the account over its cap across meters, or
    /// <see langword="null"/> when they fit. <paramref name="usedOf"/> gives each member period's
    /// current usage; an event that adds no cost is never refused by the cap.
    /// </summary>
    public UsageLimitExceededException? AccountCapRefusal(Func<MeterRule, long> usedOf, long units)
    {
        if (AccountCap is not { } cap || Schedule is null)
        {
            return null;
        }

        var before = 0m;
        foreach (var member in cap.Members)
        {
            before += member.CostOf(usedOf(member));
        }

        var used = usedOf(this);
        var after = before - CostOf(used) + CostOf(used + units);
        if (after <= before || after <= cap.Limit)
        {
            return null;
        }

        return new UsageLimitExceededException(
            $"This account capped its spend across all meters at {Money(cap.Limit)} per period; {Money(before)} is used and {Count(units)} more {Unit} of '{Key.Meter}' would bring it to {Money(after)}. The limit resets at {Period.End:O}.",
            Key.Meter,
            UsageLimitKind.AccountSpendCap,
            cap.Limit,
            before,
            units,
            Period.End);
    }

    /// <summary>The thresholds crossed going from <paramref name="before"/> to <paramref name="after"/> units (each at most once).</summary>
    public IEnumerable<(AlertThreshold Threshold, long Used, decimal Amount)> Crossed(long before, long after)
    {
        if (after <= before)
        {
            yield break;
        }

        foreach (var t in Alerts)
        {
            var crossed = t.Kind switch
            {
                AlertThresholdKind.PercentOfIncluded => Included > 0 && Reaches(before, after, Included * t.Value / 100m),
                AlertThresholdKind.PercentOfLimit => QuantityLimit is { } q
                    ? Reaches(before, after, q * t.Value / 100m)
                    : SpendLimit is { } s && ReachesAmount(before, after, s * t.Value / 100m),
                AlertThresholdKind.Quantity => Reaches(before, after, t.Value),
                AlertThresholdKind.Amount => ReachesAmount(before, after, t.Value),
                _ => false,
            };
            if (crossed)
            {
                yield return (t, after, CostOf(after));
            }
        }
    }

    private static bool Reaches(long before, long after, decimal target) => before < target && after >= target;

    private bool ReachesAmount(long before, long after, decimal target) => Schedule is not null && CostOf(before) < target && CostOf(after) >= target;

    /// <summary>The most units whose cost stays within <paramref name="spend"/> (cost never decreases with units).</summary>
    private long MaxUnitsWithin(decimal spend, long ceiling) => LargestFitting(ceiling, n => CostOf(n) <= spend);

    /// <summary>
    /// The most units of this meter the account's cap across meters still admits on top of what each
    /// member period has used, or <see langword="null"/> when the cap bounds nothing (no cap, or this meter adds no cost).
    /// </summary>
    public long? RoomUnderAccountCap(Func<MeterRule, long> usedOf) =>
        AccountCapRefusal(usedOf, UsageRules.MaxQuantity) is null
            ? null
            : LargestFitting(UsageRules.MaxQuantity, n => AccountCapRefusal(usedOf, n) is null);

    /// <summary>The largest n in [0, <paramref name="ceiling"/>] that <paramref name="fits"/>, for a test that holds up to some n and fails past it.</summary>
    private static long LargestFitting(long ceiling, Func<long, bool> fits)
    {
        if (fits(ceiling))
        {
            return ceiling;
        }

        long lo = 0, hi = ceiling;
        while (lo < hi)
        {
            var mid = lo + ((hi - lo + 1) / 2);
            if (fits(mid))
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return lo;
    }

    private static string Count(decimal value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private string Money(decimal value) => $"{value.ToString("0.00##", CultureInfo.InvariantCulture)} {Currency.ToUpperInvariant()}";
}

/// <summary>
/// The rules of spend control, in the core: stores call it inside their recording transaction with
/// the accounts and the locked period totals, and write what it decides.
/// </summary>
internal sealed class UsageGuard(UsageBillingOptions options)
{
    public bool Enabled => options.Limits.Enforce;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Plan, string Meter), PriceSchedule> _schedules = new();

    /// <summary>The billing period an event at <paramref name="at"/> belongs to (what the guard locks).</summary>
    public static BillingPeriod PeriodOf(string meter, DateTimeOffset at, AccountLimits? account) =>
        BillingPeriod.For(at, BillingPeriod.ItemFor(account?.State, meter));

    /// <summary>Resolves the rule of <paramref name="meter"/> for an event at <paramref name="at"/>.</summary>
    public MeterRule RuleFor(Guid userId, string meter, DateTimeOffset at, AccountLimits? account) =>
        RuleFor(userId, meter, at, PeriodOf(meter, at, account), account);

    private MeterRule RuleFor(Guid userId, string meter, DateTimeOffset at, BillingPeriod period, AccountLimits? account)
    {
        var rule = MeterRuleFor(userId, meter, period, account);
        if (account?.AccountSpendCap is not { } cap || rule.PlanId is null || rule.Schedule is null)
        {
            return rule;
        }

        // The cap sums every priced meter of the plan; each in its own period at the same instant.
        var members = new List<MeterRule>();
        foreach (var other in options.Plans[rule.PlanId].Meters.Keys.Order(StringComparer.Ordinal))
        {
            if (!options.Meters.ContainsKey(other))
            {
                continue;
            }

            members.Add(other == meter ? rule : MeterRuleFor(userId, other, PeriodOf(other, at, account), account));
        }

        return rule with { AccountCap = new AccountSpendCapRule(cap, members) };
    }

    /// <summary>
    /// The most an account on <paramref name="planId"/> can spend on usage per period, when every priced
    /// meter of the plan is bounded by a limit; <see langword="null"/> when some meter is unbounded.
    /// </summary>
    public decimal? PlanSpendCeiling(string? planId)
    {
        if (planId is null || !options.Plans.TryGetValue(planId, out var plan))
        {
            return null;
        }

        var total = 0m;
        foreach (var (meter, price) in plan.Meters)
        {
            var schedule = _schedules.GetOrAdd((planId, meter), static (_, p) => PriceSchedule.From(p), price);
            var rule = new MeterRule
            {
                Key = default,
                Period = default,
                CountsEvents = false,
                Schedule = schedule,
                QuantityLimit = price.HardLimit,
                SpendLimit = price.SpendLimit,
            };
            if (rule.MaxUnits() is not { } max)
            {
                return null;
            }

            total += rule.CostOf(max);
        }

        return total;
    }

    private MeterRule MeterRuleFor(Guid userId, string meter, BillingPeriod period, AccountLimits? account)
    {
        var state = account?.State;
        var key = new PeriodKey(userId, meter, period.Start);
        AccountMeterSettings? settings = null;
        account?.Settings.TryGetValue(meter, out settings);
        var definition = options.Meters.GetValueOrDefault(meter);
        var countsEvents = definition?.Aggregation == MeterAggregation.Count;
        var unit = definition?.Unit ?? "units";
        var alerts = settings?.Alerts ?? [.. options.Limits.Alerts.Where(a => a.Meter is null || a.Meter == meter)];

        var planId = state?.PlanId ?? options.DefaultPlan;
        PlanDefinition? plan = null;
        if (planId is not null && !options.Plans.TryGetValue(planId, out plan))
        {
            planId = null;
        }

        long? quantityLimit = null;
        var quantityKind = UsageLimitKind.HardLimit;
        decimal? spendLimit = null;
        var spendKind = UsageLimitKind.SpendLimit;
        PriceSchedule? schedule = null;
        long included = 0;
        if (plan is null)
        {
            switch (options.Limits.NoPlan)
            {
                case NoPlanPolicy.Deny:
                    quantityLimit = 0;
                    quantityKind = UsageLimitKind.NoPlan;
                    break;
                case NoPlanPolicy.FreeAllowance:
                    quantityLimit = options.Limits.NoPlanAllowance.GetValueOrDefault(meter);
                    quantityKind = UsageLimitKind.NoPlanAllowance;
                    included = quantityLimit.Value;
                    break;
            }
        }
        else if (plan.Meters.TryGetValue(meter, out var price))
        {
            schedule = _schedules.GetOrAdd((planId!, meter), static (_, p) => PriceSchedule.From(p), price);
            included = schedule.Included;
            quantityLimit = price.HardLimit;
            spendLimit = price.SpendLimit;
        }

        if (settings?.QuantityCap is { } qc && (quantityLimit is null || qc < quantityLimit))
        {
            quantityLimit = qc;
            quantityKind = UsageLimitKind.CustomerQuantityCap;
        }

        if (settings?.SpendCap is { } sc && (spendLimit is null || sc < spendLimit))
        {
            spendLimit = sc;
            spendKind = UsageLimitKind.CustomerSpendCap;
        }

        return new MeterRule
        {
            Key = key,
            Period = period,
            CountsEvents = countsEvents,
            PlanId = planId,
            Currency = plan?.Currency ?? "usd",
            Schedule = schedule,
            Included = included,
            QuantityLimit = quantityLimit,
            QuantityLimitKind = quantityKind,
            SpendLimit = spendLimit,
            SpendLimitKind = spendKind,
            Alerts = alerts,
            Unit = unit,
        };
    }

    /// <summary>The rule of each event of a batch, in order.</summary>
    public MeterRule[] Rules(IReadOnlyList<NewUsageEvent> events, IReadOnlyDictionary<Guid, AccountLimits> accounts)
    {
        var rules = new MeterRule[events.Count];
        var cache = new Dictionary<(Guid, string, long), MeterRule>();
        for (var i = 0; i < events.Count; i++)
        {
            var e = events[i];
            var account = accounts.GetValueOrDefault(e.UserId);
            var period = PeriodOf(e.Meter, e.OccurredAt, account);
            var id = (e.UserId, e.Meter, period.Start.UtcTicks);
            rules[i] = cache.TryGetValue(id, out var seen) ? seen : cache[id] = RuleFor(e.UserId, e.Meter, e.OccurredAt, period, account);
        }

        return rules;
    }

    /// <summary>
    /// Decides a batch in order: each inserted event fits the totals as they stand after the events
    /// before it, or is refused. Returns the refusals by event index, the new totals of every period
    /// that changed and the alerts crossed.
    /// </summary>
    public GuardDecision Decide(IReadOnlyList<NewUsageEvent> events, MeterRule[] rules, HashSet<Guid> inserted, IReadOnlyDictionary<PeriodKey, PeriodTotals> totals, DateTimeOffset now)
    {
        var running = new Dictionary<PeriodKey, PeriodTotals>();
        var refused = new Dictionary<int, UsageLimitExceededException>();
        for (var i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (!inserted.Contains(e.Id))
            {
                continue;   // a replay of a stored event: it was counted when it was first recorded
            }

            var rule = rules[i];
            var current = running.TryGetValue(rule.Key, out var r) ? r : totals.GetValueOrDefault(rule.Key);
            if ((rule.Refusal(rule.UsedOf(current), rule.UnitsOf(e)) ?? rule.AccountCapRefusal(m => m.UsedOf(running.TryGetValue(m.Key, out var mr) ? mr : totals.GetValueOrDefault(m.Key)), rule.UnitsOf(e))) is { } refusal)
            {
                refused[i] = refusal;
                continue;
            }

            running[rule.Key] = current.Add(e);
        }

        var alerts = new List<NewUsageAlert>();
        var byKey = rules.DistinctBy(r => r.Key).ToDictionary(r => r.Key);
        foreach (var (key, after) in running)
        {
            var rule = byKey[key];
            foreach (var (threshold, used, amount) in rule.Crossed(rule.UsedOf(totals.GetValueOrDefault(key)), rule.UsedOf(after)))
            {
                alerts.Add(new NewUsageAlert(Guid.CreateVersion7(now), key.UserId, key.Meter, rule.Period.Start, rule.Period.End, threshold, used, amount, now));
            }
        }

        return new GuardDecision(refused, running, alerts);
    }
}

/// <summary>What the guard decided for one batch.</summary>
/// <param name="Refused">The refused events by batch index.</param>
/// <param name="NewTotals">The totals of every period that grew, after the batch.</param>
/// <param name="Alerts">Alerts crossed by the batch.</param>
internal sealed record GuardDecision(
    IReadOnlyDictionary<int, UsageLimitExceededException> Refused,
    IReadOnlyDictionary<PeriodKey, PeriodTotals> NewTotals,
    IReadOnlyList<NewUsageAlert> Alerts);
