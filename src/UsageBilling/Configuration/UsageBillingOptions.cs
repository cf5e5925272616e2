namespace UsageBilling.Configuration;

/// <summary>
/// Root options of UsageBilling, bound from the <c>UsageBilling</c> configuration section.
/// Meters and plans live here so that adding or repricing a meter never touches feature code.
/// </summary>
public sealed class UsageBillingOptions
{
    /// <summary>The configuration section name the options bind from by convention.</summary>
    public const string SectionName = "UsageBilling";

    /// <summary>
    /// Billable meters keyed by their Stripe meter <c>event_name</c> (for example <c>ai_messages</c>).
    /// At least one is required.
    /// </summary>
    public Dictionary<string, MeterDefinition> Meters { get; } = new(StringComparer.Ordinal);

    /// <summary>Plans keyed by plan id (for example <c>starter</c>, <c>pro</c>).</summary>
    public Dictionary<string, PlanDefinition> Plans { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// The plan applied to users without a subscription when summarising usage; <see langword="null"/>
    /// (the default) means such users see usage without allowance or price.
    /// </summary>
    public string? DefaultPlan { get; set; }

    /// <summary>Tuning of the group-commit recorder.</summary>
    public RecordingOptions Recording { get; } = new();
}

/// <summary>How the recorder batches concurrent callers into shared transactions.</summary>
public sealed class RecordingOptions
{
    /// <summary>The most events written in one transaction. Default 2 000.</summary>
    public int MaxBatchSize { get; set; } = 2000;

    /// <summary>
    /// How many batches may commit at the same time; <see langword="null"/> (the default) lets the
    /// store decide (1 for SQLite, which has a single writer; 4 for PostgreSQL).
    /// </summary>
    public int? MaxConcurrentBatches { get; set; }
}

/// <summary>How a meter aggregates its events over a billing period.</summary>
public enum MeterAggregation
{
    /// <summary>The sum of the events' quantities (Stripe meter formula <c>sum</c>).</summary>
    Sum,

    /// <summary>
    /// The number of events, whatever their quantities. The flusher pre-aggregates, so the Stripe
    /// meter is still provisioned with formula <c>sum</c> and receives the event count as the value.
    /// </summary>
    Count,
}

/// <summary>A billable meter: one Stripe Billing Meter.</summary>
public sealed class MeterDefinition
{
    /// <summary>The name customers see, for example "AI messages". Defaults to the event name.</summary>
    public string? DisplayName { get; set; }

    /// <summary>How usage aggregates in a period. Default <see cref="MeterAggregation.Sum"/>.</summary>
    public MeterAggregation Aggregation { get; set; } = MeterAggregation.Sum;

    /// <summary>The unit shown next to quantities, for example "messages". Optional.</summary>
    public string? Unit { get; set; }
}

/// <summary>A plan: a flat monthly fee plus a price per meter.</summary>
public sealed class PlanDefinition
{
    /// <summary>The name customers see. Defaults to the plan id.</summary>
    public string? DisplayName { get; set; }

    /// <summary>ISO currency code, lower case as Stripe writes it. Default <c>usd</c>.</summary>
    public string Currency { get; set; } = "usd";

    /// <summary>The flat fee billed at the start of each monthly period, in currency units (e.g. 19.00). Default 0.</summary>
    public decimal MonthlyPrice { get; set; }

    /// <summary>Per-meter pricing keyed by meter event name.</summary>
    public Dictionary<string, PlanMeterPrice> Meters { get; } = new(StringComparer.Ordinal);
}

/// <summary>How tiers apply to a period's total.</summary>
public enum TiersMode
{
    /// <summary>Each unit is priced by the tier it falls in (Stripe <c>graduated</c>).</summary>
    Graduated,

    /// <summary>All units are priced by the tier the total reaches (Stripe <c>volume</c>).</summary>
    Volume,
}

/// <summary>
/// The price of one meter in a plan. Either a <see cref="UnitPrice"/> for every unit past the
/// allowance, or explicit <see cref="Tiers"/> whose <see cref="PriceTier.UpTo"/> bounds count from
/// zero (as in Stripe). The allowance, when set, becomes a free first tier.
/// </summary>
public sealed class PlanMeterPrice
{
    /// <summary>Units included for free each period. Default 0.</summary>
    public long Included { get; set; }

    /// <summary>Price of each unit past the allowance, in currency units. Exclusive with <see cref="Tiers"/>.</summary>
    public decimal? UnitPrice { get; set; }

    /// <summary>Explicit price tiers past the allowance; the last one must be unbounded.</summary>
    public List<PriceTier> Tiers { get; } = [];

    /// <summary>How <see cref="Tiers"/> apply. Default <see cref="TiersMode.Graduated"/>.</summary>
    public TiersMode TiersMode { get; set; } = TiersMode.Graduated;

    /// <summary>
    /// Optional hard limit per period: the app refuses the billable action once reached.
    /// <see langword="null"/> (the default) means no limit.
    /// </summary>
    public long? HardLimit { get; set; }
}

/// <summary>One price tier.</summary>
public sealed class PriceTier
{
    /// <summary>Inclusive upper bound of the tier in units counted from zero; <see langword="null"/> = unbounded.</summary>
    public long? UpTo { get; set; }

    /// <summary>Price per unit in this tier, in currency units.</summary>
    public decimal UnitAmount { get; set; }

    /// <summary>Flat amount charged once when usage reaches this tier, in currency units.</summary>
    public decimal FlatAmount { get; set; }
}
