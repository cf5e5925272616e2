namespace UsageBilling;

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

    /// <summary>Spend control: enforcement of limits, the policy for accounts without a plan, and usage alerts.</summary>
    public LimitOptions Limits { get; } = new();

    /// <summary>Background pruning of acknowledged history (<c>UsageBilling:Retention</c>); off by default.</summary>
    public RetentionOptions Retention { get; } = new();
}

/// <summary>
/// Spend control. Limits are enforced inside the transaction that records an event, against a
/// per (account, meter, billing period) total, so several app instances cannot overshoot.
/// </summary>
public sealed class LimitOptions
{
    /// <summary>
    /// Whether <c>RecordAsync</c> enforces limits, keeps the period totals and writes alerts. Default
    /// <see langword="true"/>. <see langword="false"/> records without any check (and without period
    /// totals); turning it back on mid-period leaves existing period totals behind by what was recorded meanwhile.
    /// </summary>
    public bool Enforce { get; set; } = true;

    /// <summary>
    /// What accounts without a plan (no subscription and no <see cref="UsageBillingOptions.DefaultPlan"/>) may use.
    /// Default <see cref="NoPlanPolicy.Deny"/>: usage nobody would be billed for is refused.
    /// </summary>
    public NoPlanPolicy NoPlan { get; set; } = NoPlanPolicy.Deny;

    /// <summary>
    /// With <see cref="NoPlanPolicy.FreeAllowance"/>: the units per billing period (calendar month) an
    /// account without a plan may use, keyed by meter event name; a meter not listed allows none.
    /// </summary>
    public Dictionary<string, long> NoPlanAllowance { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Alert thresholds applied to every account and meter that has not set its own (for example 80 and
    /// 100 % of the allowance). Each fires once per account, meter, period and threshold. Default none.
    /// </summary>
    public List<AlertThreshold> Alerts { get; } = [];

    /// <summary>Delivery of alerts to the <c>IUsageAlertHandler</c> implementations registered in DI.</summary>
    public AlertDeliveryOptions Delivery { get; } = new();
}

/// <summary>What an account without a plan may use.</summary>
public enum NoPlanPolicy
{
    /// <summary>Nothing: every event is refused with <c>UsageLimitExceededException</c>.</summary>
    Deny,

    /// <summary>Up to <see cref="LimitOptions.NoPlanAllowance"/> units per meter and calendar month, unbilled.</summary>
    FreeAllowance,

    /// <summary>Without limit (and unbilled, unless the account later subscribes within the period).</summary>
    Allow,
}

/// <summary>What an alert threshold is measured against.</summary>
public enum AlertThresholdKind
{
    /// <summary>A percentage of the plan's free allowance (<c>Included</c>) of the meter.</summary>
    PercentOfIncluded,

    /// <summary>A percentage of the account's effective limit: the quantity limit if any, else the spend limit.</summary>
    PercentOfLimit,

    /// <summary>An absolute quantity of the meter's units in the period.</summary>
    Quantity,

    /// <summary>An absolute amount of the meter's projected cost in the period, in currency units.</summary>
    Amount,
}

/// <summary>One alert threshold: fires once when a period's usage first reaches it.</summary>
public sealed class AlertThreshold
{
    /// <summary>What <see cref="Value"/> measures.</summary>
    public AlertThresholdKind Kind { get; set; }

    /// <summary>The percentage, quantity or amount; above zero.</summary>
    public decimal Value { get; set; }

    /// <summary>The meter it applies to; <see langword="null"/> (the default) for every meter.</summary>
    public string? Meter { get; set; }

    /// <summary>The stable key of the threshold within an account·meter·period, for example <c>percent_of_included:80</c>.</summary>
    public string Key => $"{KindText(Kind)}:{Value.ToString("0.######", System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>The snake_case name of a kind, as keys and storage write it.</summary>
    /// <param name="kind">The kind.</param>
    /// <returns>Its name.</returns>
    public static string KindText(AlertThresholdKind kind) => kind switch
    {
        AlertThresholdKind.PercentOfIncluded => "percent_of_included",
        AlertThresholdKind.PercentOfLimit => "percent_of_limit",
        AlertThresholdKind.Quantity => "quantity",
        AlertThresholdKind.Amount => "amount",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown alert threshold kind."),
    };

    /// <summary>Parses a key written by <see cref="Key"/>.</summary>
    /// <param name="key">The key, <c>kind:value</c>.</param>
    /// <param name="threshold">The threshold, when the key is well formed.</param>
    /// <returns>Whether it parsed.</returns>
    public static bool TryParse(string? key, out AlertThreshold threshold)
    {
        threshold = new AlertThreshold();
        var colon = key?.IndexOf(':', StringComparison.Ordinal) ?? -1;
        if (key is null || colon <= 0)
        {
            return false;
        }

        AlertThresholdKind? kind = key[..colon] switch
        {
            "percent_of_included" => AlertThresholdKind.PercentOfIncluded,
            "percent_of_limit" => AlertThresholdKind.PercentOfLimit,
            "quantity" => AlertThresholdKind.Quantity,
            "amount" => AlertThresholdKind.Amount,
            _ => null,
        };
        if (kind is null || !decimal.TryParse(key[(colon + 1)..], System.Globalization.NumberStyles.Number, System.Globalization.CultureInfo.InvariantCulture, out var value) || value <= 0)
        {
            return false;
        }

        threshold = new AlertThreshold { Kind = kind.Value, Value = value };
        return true;
    }
}

/// <summary>How alerts are delivered from the outbox to the handlers.</summary>
public sealed class AlertDeliveryOptions
{
    /// <summary>Whether the background dispatcher runs. Default <see langword="true"/> (it idles without handlers).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How often the dispatcher looks for due alerts. Default 2 seconds.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a claimed alert is reserved for one dispatcher before another may retry it. Default 1 minute.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The delay before the first retry; it doubles per attempt. Default 5 seconds.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest delay between retries. Default 10 minutes.</summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The most alerts claimed per round. Default 100.</summary>
    public int BatchSize { get; set; } = 100;
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

    /// <summary>
    /// Optional spend limit per period, in currency units: an event is refused when the meter's
    /// projected cost (the same tiers as the invoice) would exceed it. <see langword="null"/> (the default) means none.
    /// </summary>
    public decimal? SpendLimit { get; set; }
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
