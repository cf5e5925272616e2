using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Stripe;

namespace UsageBilling;

/// <summary>Registers the one <see cref="StripeClient"/> (also as <see cref="IStripeClient"/>) UsageBilling uses, built from <see cref="StripeOptions"/>.</summary>
public static class StripeRegistration
{
    /// <summary>Configures Stripe access from a configuration section (usually <c>Stripe</c>).</summary>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="section">The section.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UseStripe(this UsageBillingBuilder builder, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        return builder.UseStripeCore(o => o.Bind(section));
    }

    /// <summary>Configures Stripe access in code.</summary>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <param name="configure">Sets the key and URLs.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder UseStripe(this UsageBillingBuilder builder, Action<StripeOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return builder.UseStripeCore(o => o.Configure(configure));
    }

    private static UsageBillingBuilder UseStripeCore(this UsageBillingBuilder builder, Action<OptionsBuilder<StripeOptions>> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        configure(builder.Services.AddOptionsWithValidateOnStart<StripeOptions>());
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<StripeOptions>, StripeOptionsValidator>());
        builder.Services.TryAddSingleton(sp => CreateClient(sp.GetRequiredService<IOptions<StripeOptions>>().Value));
        builder.Services.TryAddSingleton<IStripeClient>(sp => sp.GetRequiredService<StripeClient>());
        return builder;
    }

    /// <summary>Builds a Stripe.net client from options: both bases pointed at <see cref="StripeOptions.ApiBase"/> when set.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The client.</returns>
    public static StripeClient CreateClient(StripeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
#pragma warning disable CA2000 // The HttpClient lives as long as the singleton client.
        var http = new HttpClient { Timeout = options.Timeout };
#pragma warning restore CA2000
        var clientOptions = new StripeClientOptions
        {
            ApiKey = options.SecretKey,
            HttpClient = new SystemNetHttpClient(http, options.MaxNetworkRetries),
        };
        if (options.ApiBase is { } apiBase)
        {
            clientOptions.ApiBase = apiBase;
            clientOptions.MeterEventsBase = options.MeterEventsBase ?? apiBase;
            clientOptions.FilesBase = apiBase;
            clientOptions.ConnectBase = apiBase;
        }
        else if (options.MeterEventsBase is { } meterEventsBase)
        {
            clientOptions.MeterEventsBase = meterEventsBase;
        }

        return new StripeClient(clientOptions);
    }
}
