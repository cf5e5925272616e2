using Microsoft.Extensions.DependencyInjection;
using Stripe;
using Stripe.Billing;
using UsageBilling.StripeEmulator;
using TiersMode = UsageBilling.TiersMode;

namespace UsageBilling.Tests.Provisioning;

public sealed class StripeProvisionerTests : IAsyncLifetime
{
    private StripeEmulatorServer _emulator = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _emulator = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions(), Ct);

    public async ValueTask DisposeAsync() => await _emulator.DisposeAsync();

    [Fact]
    public async Task ProvisionAsync_FreshAccount_CreatesMetersProductsAndTieredPrices()
    {
        var (provisioner, stripe, services) = Build(Configure);
        await using var _ = services;

        var result = await provisioner.ProvisionAsync(cancellationToken: Ct);

        Assert.False(result.DryRun);
        Assert.All(result.Objects, o => Assert.Equal(ProvisioningAction.Created, o.Action));
        Assert.All(result.Objects, o => Assert.NotNull(o.StripeId));
        // 2 meters + per plan (product + base price + one price per meter): starter 4, volume 3.
        Assert.Equal(9, result.Objects.Count);

        var meters = await stripe.V1.Billing.Meters.ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: Ct);
        var aiMeter = Assert.Single(meters.Data, m => m.EventName == "ai_messages");
        Assert.Equal("sum", aiMeter.DefaultAggregation.Formula);
        Assert.Equal("AI messages", aiMeter.DisplayName);
        // Always "sum" in Stripe: the flusher sends a count meter's report as the number of events.
        Assert.Equal("sum", Assert.Single(meters.Data, m => m.EventName == "api_calls").DefaultAggregation.Formula);

        var metered = await stripe.V1.Prices.GetAsync(result.MeteredPriceId("starter", "ai_messages")!, new PriceGetOptions { Expand = ["tiers"] }, cancellationToken: Ct);
        Assert.Equal("ub_starter_ai_messages", metered.LookupKey);
        Assert.Equal("metered", metered.Recurring.UsageType);
        Assert.Equal(aiMeter.Id, metered.Recurring.Meter);
        Assert.Equal("tiered", metered.BillingScheme);
        Assert.Equal("graduated", metered.TiersMode);
        Assert.Collection(
            metered.Tiers,
            t => { Assert.Equal(100, t.UpTo); Assert.Equal(0m, t.UnitAmountDecimal ?? t.UnitAmount ?? -1); },
            t => { Assert.Null(t.UpTo); Assert.Equal(2m, t.UnitAmountDecimal); });

        var volume = await stripe.V1.Prices.GetAsync(result.MeteredPriceId("volume", "ai_messages")!, new PriceGetOptions { Expand = ["tiers"] }, cancellationToken: Ct);
        Assert.Equal("volume", volume.TiersMode);
        Assert.Equal(3, volume.Tiers.Count);
        Assert.Equal(100m, volume.Tiers[2].FlatAmountDecimal ?? volume.Tiers[2].FlatAmount);

        var flat = await stripe.V1.Prices.GetAsync(result.BasePriceId("starter")!, cancellationToken: Ct);
        Assert.Equal("licensed", flat.Recurring.UsageType);
        Assert.Equal("month", flat.Recurring.Interval);
        Assert.Equal(1900, flat.UnitAmount);
        Assert.Equal("ub_starter_base", flat.LookupKey);
    }

    [Fact]
    public async Task ProvisionAsync_SecondRun_CreatesNothing()
    {
        var (provisioner, stripe, services) = Build(Configure);
        await using var _ = services;
        var first = await provisioner.ProvisionAsync(cancellationToken: Ct);
        var pricesBefore = (await stripe.V1.Prices.ListAsync(new PriceListOptions { Limit = 100 }, cancellationToken: Ct)).Data.Count;

        var second = await provisioner.ProvisionAsync(cancellationToken: Ct);

        Assert.All(second.Objects, o => Assert.Equal(ProvisioningAction.Unchanged, o.Action));
        Assert.Equal(first.Objects.Select(o => o.StripeId), second.Objects.Select(o => o.StripeId));
        Assert.Equal(pricesBefore, (await stripe.V1.Prices.ListAsync(new PriceListOptions { Limit = 100 }, cancellationToken: Ct)).Data.Count);
        Assert.Equal(2, (await stripe.V1.Billing.Meters.ListAsync(new MeterListOptions { Limit = 100 }, cancellationToken: Ct)).Data.Count);
        Assert.Equal(2, (await stripe.V1.Products.ListAsync(new ProductListOptions { Limit = 100 }, cancellationToken: Ct)).Data.Count);
    }

    [Fact]
    public async Task ProvisionAsync_UnitPriceChanged_ReplacesPriceAndMovesLookupKey()
    {
        var (provisioner, stripe, services) = Build(Configure);
        var first = await provisioner.ProvisionAsync(cancellationToken: Ct);
        await services.DisposeAsync();

        var (repriced, _, services2) = Build(o =>
        {
            Configure(o);
            o.Plans["starter"].Meters["ai_messages"].UnitPrice = 0.03m;
        });
        await using var __ = services2;
        var second = await repriced.ProvisionAsync(cancellationToken: Ct);

        var oldId = first.MeteredPriceId("starter", "ai_messages");
        var newId = second.MeteredPriceId("starter", "ai_messages");
        Assert.NotEqual(oldId, newId);
        Assert.Equal(ProvisioningAction.Updated, Assert.Single(second.Objects, o => o.StripeId == newId).Action);
        Assert.Equal(1, second.UpdatedCount);
        Assert.Equal(0, second.CreatedCount);
        var byKey = await stripe.V1.Prices.ListAsync(new PriceListOptions { LookupKeys = ["ub_starter_ai_messages"], Expand = ["data.tiers"] }, cancellationToken: Ct);
        var current = Assert.Single(byKey.Data);
        Assert.Equal(newId, current.Id);
        Assert.Equal(3m, current.Tiers[1].UnitAmountDecimal);
        Assert.False((await stripe.V1.Prices.GetAsync(oldId!, cancellationToken: Ct)).Active);
    }

    [Fact]
    public async Task ProvisionAsync_DryRun_ReportsWithoutCreating()
    {
        var (provisioner, stripe, services) = Build(Configure);
        await using var _ = services;

        var dry = await provisioner.ProvisionAsync(dryRun: true, Ct);

        Assert.True(dry.DryRun);
        Assert.Equal(9, dry.CreatedCount);
        Assert.All(dry.Objects, o => Assert.Null(o.StripeId));
        Assert.Empty((await stripe.V1.Billing.Meters.ListAsync(new MeterListOptions(), cancellationToken: Ct)).Data);
        Assert.Empty((await stripe.V1.Prices.ListAsync(new PriceListOptions(), cancellationToken: Ct)).Data);

        await provisioner.ProvisionAsync(cancellationToken: Ct);
        var after = await provisioner.ProvisionAsync(dryRun: true, Ct);
        Assert.Equal(0, after.CreatedCount + after.UpdatedCount);
        Assert.All(after.Objects, o => Assert.NotNull(o.StripeId));
    }

    [Fact]
    public async Task ProvisionAsync_MeterDisplayNameChanged_UpdatesMeterInPlace()
    {
        var (provisioner, stripe, services) = Build(Configure);
        var first = await provisioner.ProvisionAsync(cancellationToken: Ct);
        await services.DisposeAsync();

        var (renamed, _, services2) = Build(o =>
        {
            Configure(o);
            o.Meters["ai_messages"].DisplayName = "Assistant messages";
        });
        await using var __ = services2;
        var second = await renamed.ProvisionAsync(cancellationToken: Ct);

        var meter = Assert.Single(second.Objects, o => o.Kind == ProvisionedObjectKind.Meter && o.Meter == "ai_messages");
        Assert.Equal(ProvisioningAction.Updated, meter.Action);
        Assert.Equal(first.MeterId("ai_messages"), meter.StripeId);
        Assert.Equal("Assistant messages", (await stripe.V1.Billing.Meters.GetAsync(meter.StripeId!, cancellationToken: Ct)).DisplayName);
    }

    private (IStripeProvisioner Provisioner, StripeClient Stripe, ServiceProvider Services) Build(Action<UsageBillingOptions> configure)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddUsageBilling(configure)
            .UseStripe(o =>
            {
                o.SecretKey = "sk_test_provisioner_tests";
                o.ApiBase = _emulator.ApiBase;
                o.MaxNetworkRetries = 0;
            })
            .AddStripeProvisioner();
        var provider = services.BuildServiceProvider();
        return (provider.GetRequiredService<IStripeProvisioner>(), provider.GetRequiredService<StripeClient>(), provider);
    }

    private static void Configure(UsageBillingOptions o)
    {
        o.Meters["ai_messages"] = new MeterDefinition { DisplayName = "AI messages", Unit = "messages" };
        o.Meters["api_calls"] = new MeterDefinition { DisplayName = "API calls", Aggregation = MeterAggregation.Count };

        var starter = new PlanDefinition { DisplayName = "Starter", MonthlyPrice = 19m };
        starter.Meters["ai_messages"] = new PlanMeterPrice { Included = 100, UnitPrice = 0.02m, HardLimit = 1000 };
        starter.Meters["api_calls"] = new PlanMeterPrice { Included = 1000, UnitPrice = 0.001m };
        o.Plans["starter"] = starter;

        var volume = new PlanDefinition { DisplayName = "Volume" };
        var vol = new PlanMeterPrice { TiersMode = TiersMode.Volume };
        vol.Tiers.Add(new UsageBilling.PriceTier { UpTo = 100, UnitAmount = 0.10m });
        vol.Tiers.Add(new UsageBilling.PriceTier { UpTo = 1000, UnitAmount = 0.05m });
        vol.Tiers.Add(new UsageBilling.PriceTier { UpTo = null, UnitAmount = 0.01m, FlatAmount = 1m });
        volume.Meters["ai_messages"] = vol;
        o.Plans["volume"] = volume;
    }
}
