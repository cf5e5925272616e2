using UsageBilling.Storage;

namespace UsageBilling.Tests;

public class UsageGuardTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 15, 12, 0, 0, TimeSpan.Zero);
    private static readonly Guid User = Guid.Parse("0199a000-0000-7000-8000-000000000001");

    private static UsageBillingOptions Options(Action<UsageBillingOptions>? configure = null)
    {
        var o = new UsageBillingOptions();
        o.Meters["m"] = new MeterDefinition();
        o.Meters["c"] = new MeterDefinition { Aggregation = MeterAggregation.Count };
        var plan = new PlanDefinition();
        var price = new PlanMeterPrice { Included = 100, HardLimit = 500, SpendLimit = 3m };
        price.Tiers.Add(new PriceTier { UpTo = 200, UnitAmount = 0.01m });
        price.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.02m, FlatAmount = 1m });
        plan.Meters["m"] = price;
        plan.Meters["c"] = new PlanMeterPrice { UnitPrice = 1m, HardLimit = 3 };
        o.Plans["p"] = plan;
        configure?.Invoke(o);
        return o;
    }

    private static AccountLimits OnPlan(string? plan, AccountMeterSettings? settings = null) =>
        new(plan is null ? null : new BillingState(User, "cus_1", plan, []), settings is null ? new Dictionary<string, AccountMeterSettings>() : new Dictionary<string, AccountMeterSettings> { ["m"] = settings });

    private static NewUsageEvent Event(string meter, long quantity) => new(Guid.CreateVersion7(Now), User, meter, quantity, Now, null, Now);

    [Fact]
    public void Rule_SpendLimitThroughGraduatedTiersWithFlatFee_BoundsUnitsBelowTheHardLimit()
    {
        var rule = new UsageGuard(Options()).RuleFor(User, "m", Now, OnPlan("p"));

        // 100 free, 100 at 0.01 (1.00), then 1.00 flat + 0.02 each: 3.00 is reached at 250 units.
        Assert.Equal(250, rule.MaxUnits());
        Assert.Null(rule.Refusal(249, 1));
        var refusal = rule.Refusal(250, 1);
        Assert.NotNull(refusal);
        Assert.Equal(UsageLimitKind.SpendLimit, refusal.Kind);
        Assert.Equal(3m, refusal.Limit);
        Assert.Equal(3m, refusal.Used);
        Assert.Equal(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero), refusal.PeriodEnd);
    }

    [Fact]
    public void Rule_CustomerCapsBelowThePlan_Win_AndCapsAboveItDoNot()
    {
        var guard = new UsageGuard(Options());
        var capped = guard.RuleFor(User, "m", Now, OnPlan("p", new AccountMeterSettings(1.5m, 400, null)));
        Assert.Equal(UsageLimitKind.CustomerSpendCap, capped.SpendLimitKind);
        Assert.Equal(200, capped.MaxUnits());   // 1.00 at 200 units; unit 201 brings the 1.00 flat fee: 2.02 > 1.50
        Assert.Equal(UsageLimitKind.CustomerQuantityCap, capped.QuantityLimitKind);

        var loose = guard.RuleFor(User, "m", Now, OnPlan("p", new AccountMeterSettings(99m, 9999, null)));
        Assert.Equal(UsageLimitKind.SpendLimit, loose.SpendLimitKind);
        Assert.Equal(UsageLimitKind.HardLimit, loose.QuantityLimitKind);
        Assert.Equal(500, loose.QuantityLimit);
    }

    [Theory]
    [InlineData(NoPlanPolicy.Deny, 0L, UsageLimitKind.NoPlan)]
    [InlineData(NoPlanPolicy.FreeAllowance, 7L, UsageLimitKind.NoPlanAllowance)]
    public void Rule_WithoutPlan_FollowsThePolicy(NoPlanPolicy policy, long max, UsageLimitKind kind)
    {
        var rule = new UsageGuard(Options(o =>
        {
            o.Limits.NoPlan = policy;
            o.Limits.NoPlanAllowance["m"] = 7;
        })).RuleFor(User, "m", Now, OnPlan(null));

        Assert.Equal(max, rule.MaxUnits());
        Assert.Equal(kind, rule.Refusal(max, 1)!.Kind);
    }

    [Fact]
    public void Rule_WithoutPlan_AllowHasNoLimit_AndTheDefaultIsDeny()
    {
        Assert.Equal(NoPlanPolicy.Deny, new LimitOptions().NoPlan);
        var rule = new UsageGuard(Options(o => o.Limits.NoPlan = NoPlanPolicy.Allow)).RuleFor(User, "m", Now, OnPlan(null));
        Assert.Null(rule.MaxUnits());
        Assert.Null(rule.Refusal(long.MaxValue / 4, 1));
    }

    [Fact]
    public void Decide_InBatchOrder_AcceptsWhatFitsAndSkipsReplays()
    {
        var guard = new UsageGuard(Options());
        var events = new[] { Event("c", 10), Event("c", 10), Event("c", 10), Event("c", 10) };
        var accounts = new Dictionary<Guid, AccountLimits> { [User] = OnPlan("p") };
        var rules = guard.Rules(events, accounts);
        var inserted = events.Select(e => e.Id).Where((_, i) => i != 0).ToHashSet();   // event 0 is a replay
        var totals = new Dictionary<PeriodKey, PeriodTotals> { [rules[0].Key] = new(50, 1) };

        var decision = guard.Decide(events, rules, inserted, totals, Now);

        // A count meter counts events: 1 stored + 2 fit the limit of 3; the last is refused.
        Assert.Equal([3], decision.Refused.Keys);
        Assert.Equal(new PeriodTotals(70, 3), decision.NewTotals[rules[0].Key]);
    }

    [Fact]
    public void Crossed_SeveralThresholdsInOneStep_EachOnce_AmountsThroughTheTiers()
    {
        var rule = new UsageGuard(Options(o =>
        {
            o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = 50 });
            o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfIncluded, Value = 100 });
            o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.Amount, Value = 1m });
            o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfLimit, Value = 100, Meter = "c" });
        })).RuleFor(User, "m", Now, OnPlan("p"));

        Assert.Equal(["percent_of_included:50", "percent_of_included:100"], rule.Crossed(0, 199).Select(c => c.Threshold.Key));
        Assert.Equal(["amount:1"], rule.Crossed(199, 200).Select(c => c.Threshold.Key));
        Assert.Empty(rule.Crossed(200, 260));
        Assert.Empty(rule.Crossed(10, 10));
    }

    [Fact]
    public void AlertThreshold_KeysRoundTrip_AndBadKeysDoNotParse()
    {
        var t = new AlertThreshold { Kind = AlertThresholdKind.Amount, Value = 25.50m };
        Assert.Equal("amount:25.5", t.Key);
        Assert.True(AlertThreshold.TryParse(t.Key, out var back));
        Assert.Equal(AlertThresholdKind.Amount, back.Kind);
        Assert.Equal(25.5m, back.Value);
        Assert.False(AlertThreshold.TryParse("amount:-1", out _));
        Assert.False(AlertThreshold.TryParse("percent:5", out _));
        Assert.False(AlertThreshold.TryParse("quantity", out _));
    }
}
