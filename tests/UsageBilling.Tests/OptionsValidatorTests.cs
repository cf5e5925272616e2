
namespace UsageBilling.Tests;

public class OptionsValidatorTests
{
    private static UsageBillingOptions Valid()
    {
        var o = new UsageBillingOptions();
        o.Meters["ai_messages"] = new MeterDefinition();
        var plan = new PlanDefinition { MonthlyPrice = 10m };
        plan.Meters["ai_messages"] = new PlanMeterPrice { Included = 10, UnitPrice = 0.1m };
        o.Plans["starter"] = plan;
        return o;
    }

    private static IEnumerable<string> Errors(UsageBillingOptions o) =>
        new UsageBillingOptionsValidator().Validate(null, o).Failures ?? [];

    [Fact]
    public void Validate_ValidOptions_Succeeds() =>
        Assert.True(new UsageBillingOptionsValidator().Validate(null, Valid()).Succeeded);

    [Fact]
    public void Validate_RetentionShorterThanStripesWindowOrBadTuning_Fails()
    {
        var o = Valid();
        o.Retention.Keep = TimeSpan.FromDays(30);
        o.Retention.Interval = TimeSpan.FromSeconds(5);
        o.Retention.BatchSize = 10;
        var errors = Errors(o).ToList();
        Assert.Contains(errors, e => e.StartsWith("UsageBilling:Retention:Keep (30.00:00:00) must be at least 35 days", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("UsageBilling:Retention:Interval", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("UsageBilling:Retention:BatchSize", StringComparison.Ordinal));

        var off = Valid();
        Assert.Null(off.Retention.Keep);
        off.Retention.Keep = TimeSpan.FromDays(90);
        Assert.Empty(Errors(off));
    }

    [Fact]
    public void Validate_NoMeters_Fails()
    {
        var o = new UsageBillingOptions();
        Assert.Contains(Errors(o), e => e.Contains("at least one meter", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_PlanPricesUnknownMeter_Fails()
    {
        var o = Valid();
        o.Plans["starter"].Meters["gpu"] = new PlanMeterPrice { UnitPrice = 1m };
        Assert.Contains(Errors(o), e => e.Contains("'gpu'", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_BothUnitPriceAndTiers_Fails()
    {
        var o = Valid();
        o.Plans["starter"].Meters["ai_messages"].Tiers.Add(new PriceTier { UnitAmount = 1m });
        Assert.Contains(Errors(o), e => e.Contains("exactly one of UnitPrice or Tiers", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_TiersNotAscendingOrLastBounded_Fails()
    {
        var o = Valid();
        var price = new PlanMeterPrice { Included = 100 };
        price.Tiers.Add(new PriceTier { UpTo = 50, UnitAmount = 1m });
        price.Tiers.Add(new PriceTier { UpTo = 500, UnitAmount = 1m });
        o.Plans["starter"].Meters["ai_messages"] = price;
        var errors = Errors(o).ToList();
        Assert.Contains(errors, e => e.Contains("tier 1 UpTo (50)", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("last tier must be unbounded", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_HardLimitBelowAllowance_Fails()
    {
        var o = Valid();
        o.Plans["starter"].Meters["ai_messages"].HardLimit = 5;
        Assert.Contains(Errors(o), e => e.Contains("HardLimit (5)", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_BadEventNameAndUnknownDefaultPlan_Fail()
    {
        var o = Valid();
        o.Meters["bad name!"] = new MeterDefinition();
        o.DefaultPlan = "gold";
        var errors = Errors(o).ToList();
        Assert.Contains(errors, e => e.Contains("'bad name!'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("'gold'", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_BadLimits_FailWithTheirPaths()
    {
        var o = Valid();
        o.Plans["starter"].Meters["ai_messages"].SpendLimit = -1m;
        o.Limits.NoPlanAllowance["gpu"] = 5;
        o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.Amount, Value = 0m });
        o.Limits.Delivery.BatchSize = 0;
        var errors = Errors(o).ToList();
        Assert.Contains(errors, e => e.Contains("SpendLimit must not be negative", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("NoPlanAllowance names meter 'gpu'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Alerts:0: Value must be above zero", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Delivery:BatchSize", StringComparison.Ordinal));
    }
}
