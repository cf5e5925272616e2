
namespace UsageBilling;

/// <summary>
/// The effective price tiers of one meter in one plan, exactly as they are provisioned in Stripe:
/// the allowance as a free first tier, then the unit price or the configured tiers.
/// The same tiers compute the projected cost shown to customers, so the page and the invoice agree.
/// </summary>
public sealed class PriceSchedule
{
    private readonly PriceTier[] _tiers;

    private PriceSchedule(PriceTier[] tiers, TiersMode mode, long included, long? hardLimit)
    {
        _tiers = tiers;
        Mode = mode;
        Included = included;
        HardLimit = hardLimit;
    }

    /// <summary>Units included for free each period.</summary>
    public long Included { get; }

    /// <summary>The hard limit per period, if any.</summary>
    public long? HardLimit { get; }

    /// <summary>How the tiers apply.</summary>
    public TiersMode Mode { get; }

    /// <summary>The effective tiers, ascending, the last one unbounded.</summary>
    public IReadOnlyList<PriceTier> Tiers => _tiers;

    /// <summary>Builds the schedule of a configured meter price (assumed validated).</summary>
    /// <param name="price">The configured price.</param>
    /// <returns>The effective schedule.</returns>
    public static PriceSchedule From(PlanMeterPrice price)
    {
        ArgumentNullException.ThrowIfNull(price);
        var tiers = new List<PriceTier>();
        if (price.Included > 0)
        {
            tiers.Add(new PriceTier { UpTo = price.Included, UnitAmount = 0m, FlatAmount = 0m });
        }

        if (price.UnitPrice is { } unit)
        {
            tiers.Add(new PriceTier { UpTo = null, UnitAmount = unit });
        }
        else
        {
            tiers.AddRange(price.Tiers.Select(t => new PriceTier { UpTo = t.UpTo, UnitAmount = t.UnitAmount, FlatAmount = t.FlatAmount }));
        }

        return new PriceSchedule([.. tiers], price.UnitPrice is null ? price.TiersMode : TiersMode.Graduated, price.Included, price.HardLimit);
    }

    /// <summary>
    /// The cost of <paramref name="quantity"/> units in one period, in currency units.
    /// A zero or negative total (after corrections) costs nothing, as on a Stripe invoice.
    /// </summary>
    /// <param name="quantity">The period's aggregated usage.</param>
    /// <returns>The cost, not rounded.</returns>
    public decimal CostOf(long quantity)
    {
        if (quantity <= 0)
        {
            return 0m;
        }

        if (Mode == TiersMode.Volume)
        {
            var tier = _tiers.First(t => t.UpTo is null || quantity <= t.UpTo);
            return (quantity * tier.UnitAmount) + tier.FlatAmount;
        }

        decimal cost = 0m;
        long previous = 0;
        foreach (var tier in _tiers)
        {
            var top = tier.UpTo is { } upTo ? Math.Min(quantity, upTo) : quantity;
            var units = top - previous;
            if (units <= 0)
            {
                break;
            }

            cost += (units * tier.UnitAmount) + tier.FlatAmount;
            previous = top;
        }

        return cost;
    }
}
