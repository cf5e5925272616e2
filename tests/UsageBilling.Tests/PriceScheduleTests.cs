
namespace UsageBilling.Tests;

public class PriceScheduleTests
{
    private static PlanMeterPrice Graduated()
    {
        var price = new PlanMeterPrice { Included = 1000 };
        price.Tiers.Add(new PriceTier { UpTo = 5000, UnitAmount = 0.01m });
        price.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.005m, FlatAmount = 5m });
        return price;
    }

    [Theory]
    [InlineData(-10, 0)]
    [InlineData(0, 0)]
    [InlineData(1000, 0)]
    [InlineData(1001, 0.01)]
    [InlineData(5000, 40)]
    [InlineData(5001, 45.005)]
    [InlineData(10000, 40 + 5 + 25)]
    public void CostOf_GraduatedWithAllowance_ChargesEachUnitInItsTier(long quantity, double expected) =>
        Assert.Equal((decimal)expected, PriceSchedule.From(Graduated()).CostOf(quantity));

    [Fact]
    public void From_Allowance_BecomesFreeFirstTier()
    {
        var schedule = PriceSchedule.From(Graduated());
        Assert.Equal(3, schedule.Tiers.Count);
        Assert.Equal(1000, schedule.Tiers[0].UpTo);
        Assert.Equal(0m, schedule.Tiers[0].UnitAmount);
        Assert.Null(schedule.Tiers[^1].UpTo);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(100, 10)]
    [InlineData(101, 5.05)]
    [InlineData(1001, 11.01)]
    public void CostOf_Volume_PricesAllUnitsAtReachedTier(long quantity, double expected)
    {
        var price = new PlanMeterPrice { TiersMode = TiersMode.Volume };
        price.Tiers.Add(new PriceTier { UpTo = 100, UnitAmount = 0.10m });
        price.Tiers.Add(new PriceTier { UpTo = 1000, UnitAmount = 0.05m });
        price.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.01m, FlatAmount = 1m });
        Assert.Equal((decimal)expected, PriceSchedule.From(price).CostOf(quantity));
    }

    [Fact]
    public void CostOf_UnitPriceWithAllowance_ChargesUnitsPastAllowance()
    {
        var schedule = PriceSchedule.From(new PlanMeterPrice { Included = 100, UnitPrice = 0.02m });
        Assert.Equal(0m, schedule.CostOf(100));
        Assert.Equal(1.00m, schedule.CostOf(150));
    }
}
