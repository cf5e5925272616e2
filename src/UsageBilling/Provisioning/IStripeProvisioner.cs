namespace UsageBilling;

/// <summary>
/// Creates or updates the Stripe objects the configuration describes — one meter per configured
/// meter, one product per plan, a flat monthly price and one graduated (or volume) metered price
/// per plan meter — idempotently: a second run with the same configuration creates nothing.
/// </summary>
public interface IStripeProvisioner
{
    /// <summary>
    /// Brings Stripe in line with the configuration. Existing meters are found by <c>event_name</c>,
    /// products by metadata <c>ub_plan</c>, prices by lookup key (<c>ub_{plan}_base</c>,
    /// <c>ub_{plan}_{meter}</c>). A price whose amounts changed is replaced by a new price that takes
    /// over the lookup key; the old one is archived.
    /// </summary>
    /// <param name="dryRun">When <see langword="true"/>, only reads Stripe and reports what would change.</param>
    /// <param name="cancellationToken">Cancels the run; objects already created stay and are found next time.</param>
    /// <returns>Every object with its Stripe id and what was (or would be) done to it.</returns>
    Task<ProvisioningResult> ProvisionAsync(bool dryRun = false, CancellationToken cancellationToken = default);
}

/// <summary>What the provisioner did, or would do, to one Stripe object.</summary>
public enum ProvisioningAction
{
    /// <summary>The object exists and matches the configuration.</summary>
    Unchanged,

    /// <summary>The object was created (or would be, in a dry run).</summary>
    Created,

    /// <summary>The object was changed in place or replaced (or would be, in a dry run).</summary>
    Updated,
}

/// <summary>The kind of a provisioned Stripe object.</summary>
public enum ProvisionedObjectKind
{
    /// <summary>A Billing Meter (<c>mtr_…</c>).</summary>
    Meter,

    /// <summary>A product, one per plan (<c>prod_…</c>).</summary>
    Product,

    /// <summary>A plan's flat, licensed monthly price (<c>price_…</c>).</summary>
    BasePrice,

    /// <summary>A plan's metered price of one meter (<c>price_…</c>).</summary>
    MeteredPrice,
}

/// <summary>One provisioned Stripe object.</summary>
/// <param name="Kind">What the object is.</param>
/// <param name="Key">Its stable key: the meter event name, the plan id, or the price lookup key.</param>
/// <param name="StripeId">Its Stripe id; <see langword="null"/> for an object a dry run would create.</param>
/// <param name="Action">What was (or would be) done.</param>
/// <param name="Plan">The plan it belongs to, for products and prices.</param>
/// <param name="Meter">The meter event name, for meters and metered prices.</param>
/// <param name="Note">Why it was updated, or a warning an operator should read.</param>
public sealed record ProvisionedObject(
    ProvisionedObjectKind Kind,
    string Key,
    string? StripeId,
    ProvisioningAction Action,
    string? Plan,
    string? Meter,
    string? Note = null);

/// <summary>The outcome of one provisioning run.</summary>
/// <param name="DryRun">Whether the run only read Stripe.</param>
/// <param name="Objects">Meters first, then per plan its product and prices.</param>
public sealed record ProvisioningResult(bool DryRun, IReadOnlyList<ProvisionedObject> Objects)
{
    /// <summary>How many objects were (or would be) created.</summary>
    public int CreatedCount => Objects.Count(o => o.Action == ProvisioningAction.Created);

    /// <summary>How many objects were (or would be) updated or replaced.</summary>
    public int UpdatedCount => Objects.Count(o => o.Action == ProvisioningAction.Updated);

    /// <summary>The Stripe id of a meter by event name, if known.</summary>
    /// <param name="meter">The meter event name.</param>
    /// <returns>The <c>mtr_…</c> id, or <see langword="null"/>.</returns>
    public string? MeterId(string meter) =>
        Objects.FirstOrDefault(o => o.Kind == ProvisionedObjectKind.Meter && o.Meter == meter)?.StripeId;

    /// <summary>The Stripe id of a plan's flat monthly price, if known.</summary>
    /// <param name="plan">The plan id.</param>
    /// <returns>The <c>price_…</c> id, or <see langword="null"/>.</returns>
    public string? BasePriceId(string plan) =>
        Objects.FirstOrDefault(o => o.Kind == ProvisionedObjectKind.BasePrice && o.Plan == plan)?.StripeId;

    /// <summary>The Stripe id of a plan's metered price for a meter, if known.</summary>
    /// <param name="plan">The plan id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <returns>The <c>price_…</c> id, or <see langword="null"/>.</returns>
    public string? MeteredPriceId(string plan, string meter) =>
        Objects.FirstOrDefault(o => o.Kind == ProvisionedObjectKind.MeteredPrice && o.Plan == plan && o.Meter == meter)?.StripeId;
}
